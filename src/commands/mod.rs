//! One file per subcommand: each wires settings, store, engine and display together. This is
//! the only layer that uses `anyhow`.

mod demo;
mod export;
mod ingest;
mod retry;
mod run;
mod runs;
mod simulate;
mod skip;
mod status;
mod sync;
mod target;

use anyhow::Context as _;

use crate::cli::{Cli, Command};
use crate::config::Settings;
use crate::exit::UsageError;
use crate::store::Store;

/// Runs the parsed command line and returns the process exit code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let settings = Settings::resolve(&cli.global)?;
    match cli.command {
        Command::Ingest(args) => ingest::run(&settings, args).await,
        Command::Status(args) => status::run(&settings, args).await,
        Command::Runs(args) => runs::run(&settings, args).await,
        Command::Simulate(args) => simulate::run(&settings, args).await,
        Command::Run(args) => run::run(&settings, args).await,
        Command::Sync(args) => sync::run(&settings, args).await,
        Command::Retry(args) => retry::run(&settings, args).await,
        Command::Skip(args) => skip::run(&settings, args).await,
        Command::Export(args) => export::run(&settings, args).await,
        Command::Demo(args) => demo::run(&settings, args).await,
    }
}

/// The start of every command line a hint prints: `kapsync` plus the settings that are not the
/// defaults and that a pasted command would otherwise lose (the database). The one place to
/// add more (a settings profile).
pub(crate) fn hint_prefix(settings: &Settings) -> String {
    let mut prefix = String::from("kapsync");
    if settings.db != std::path::Path::new(crate::config::DEFAULT_DB) {
        prefix.push_str(" --db ");
        prefix.push_str(&crate::report::text::shell_word(
            &settings.db.display().to_string(),
        ));
    }
    prefix
}

/// Opens (creating when missing) the database named by the settings.
async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    Store::open(&settings.db)
        .await
        .with_context(|| format!("failed to open the database {}", settings.db.display()))
}

/// Opens the database for a command that only reads or updates existing runs: a missing file
/// is a usage error (a wrong `--db` or directory), not a new empty database.
async fn open_existing_store(settings: &Settings) -> anyhow::Result<Store> {
    if !settings.db.exists() {
        return Err(UsageError(format!(
            "no database at {}: ingest a file first, or pass --db",
            settings.db.display()
        ))
        .into());
    }
    open_store(settings).await
}

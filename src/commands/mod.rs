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
use crate::config::{ConfigError, Settings};
use crate::engine::LockError;
use crate::exit::{self, UsageError};
use crate::ingest::{IngestError, MappingError};
use crate::kapture::{TargetError, TokenError};
use crate::simulator::SimError;
use crate::store::{Store, StoreError};

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
    if settings.db != std::path::Path::new(crate::store::DEFAULT_DB) {
        prefix.push_str(" --db ");
        prefix.push_str(&crate::report::text::shell_word(
            &settings.db.display().to_string(),
        ));
    }
    prefix
}

/// Maps an error from a command to its exit code: [`exit::USAGE`] when a [`UsageError`] or a
/// library error that says it is a usage error sits anywhere in its chain, [`exit::INTERNAL`]
/// otherwise.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.chain().any(is_usage) {
        exit::USAGE
    } else {
        exit::INTERNAL
    }
}

/// Whether one error of a chain is the user's to fix.
fn is_usage(cause: &(dyn std::error::Error + 'static)) -> bool {
    macro_rules! asks {
        ($($kind:ty),+) => {
            false $(|| cause.downcast_ref::<$kind>().is_some_and(<$kind>::is_usage))+
        };
    }
    cause.is::<UsageError>()
        || asks!(
            ConfigError,
            StoreError,
            IngestError,
            MappingError,
            TargetError,
            TokenError,
            LockError,
            SimError
        )
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

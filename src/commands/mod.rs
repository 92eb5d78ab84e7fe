//! One file per subcommand: each wires settings, store, engine and display together. This is
//! the only layer that uses `anyhow`.

mod demo;
mod dry_run;
mod export;
mod ingest;
mod mapping;
mod report;
mod retry;
mod run;
mod runs;
mod samples;
mod shell;
mod simulate;
mod skip;
mod status;
mod sync;
mod target;

#[cfg(test)]
mod settings_tests;

use anyhow::Context as _;

use crate::cli::{Cli, Command};
use crate::config::{ConfigError, Settings};
use crate::engine::LockError;
use crate::exit::{self, UsageError};
use crate::ingest::{IngestError, MappingError, MappingFileError};
use crate::kapture::{TargetError, TokenError};
use crate::simulator::SimError;
use crate::store::{Run, Store, StoreError};

/// Runs the parsed command line and returns the process exit code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    // These two describe the command line only: no settings file is read.
    match &cli.command {
        Command::Completions(args) => return shell::completions(args),
        Command::Man => return shell::man(),
        Command::Simulate(_) | Command::Demo(_) if cli.global.db_on_command_line => {
            return Err(UsageError(format!(
                "`kapsync {}` uses no database of yours: leave out --db ({})",
                if matches!(cli.command, Command::Demo(_)) {
                    "demo"
                } else {
                    "simulate"
                },
                if matches!(cli.command, Command::Demo(_)) {
                    "the demo writes to a temporary database that it removes at the end, so \
                     sample rows never mix with a real migration"
                } else {
                    "the simulator keeps its tickets in memory"
                }
            ))
            .into());
        }
        _ => {}
    }
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
        Command::Report(args) => report::run(&settings, args).await,
        Command::Demo(args) => demo::run(&settings, args).await,
        Command::Mapping(command) => mapping::run(&settings, command),
        Command::Samples(args) => samples::run(&settings, &args),
        Command::Completions(_) | Command::Man => unreachable!("handled above"),
    }
}

/// The start of every command line a hint prints (see [`Settings::hint_prefix`]): `kapsync`
/// plus the database, settings file and profile when they are not the defaults.
pub(crate) fn hint_prefix(settings: &Settings) -> String {
    settings.hint_prefix()
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
            MappingFileError,
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
    // Not `exists()`: that follows a link, and a dangling one is refused by the open, not
    // reported as missing.
    if std::fs::symlink_metadata(&settings.db).is_err() {
        return Err(UsageError(format!(
            "no database at {}: ingest a file first, or pass --db",
            settings.db.display()
        ))
        .into());
    }
    open_store(settings).await
}

/// The runs a `sync` into `run` drains: every run with rows pending or in flight, oldest
/// open row first, so the leftovers of a stopped night are sent before the new one; `run`
/// is among them (last when it holds nothing older).
async fn sync_runs(store: &Store, run: Run) -> anyhow::Result<Vec<Run>> {
    let mut runs = store.open_runs().await?;
    if !runs.iter().any(|r| r.id == run.id) {
        runs.push(run);
    }
    Ok(runs)
}

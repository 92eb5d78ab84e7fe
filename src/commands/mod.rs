//! One file per subcommand: each wires settings, store, engine and display together. This is
//! the only layer that uses `anyhow`.

mod ingest;
mod runs;
mod simulate;
mod status;

use crate::cli::{Cli, Command};
use crate::config::Settings;

/// Runs the parsed command line and returns the process exit code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let settings = Settings::resolve(&cli.global)?;
    match cli.command {
        Command::Ingest(args) => ingest::run(&settings, args).await,
        Command::Status(args) => status::run(&settings, args).await,
        Command::Runs(args) => runs::run(&settings, args).await,
        Command::Simulate(args) => simulate::run(&settings, args).await,
        Command::Run(_)
        | Command::Sync(_)
        | Command::Retry(_)
        | Command::Export(_)
        | Command::Demo(_) => Err(crate::exit::UsageError("this command is not built yet".into()).into()),
    }
}

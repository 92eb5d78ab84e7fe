//! The kapsync binary: parse arguments, set up logging, run the command, exit with its code.

use std::process::ExitCode;

use kapsync::{cli::Cli, commands, exit, logging};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    logging::init(cli.global.verbose, cli.global.quiet, cli.global.log_format);
    // The simulator serves many connections at once and wants every core. The other commands
    // are one loop of I/O around SQLite (which runs on its own thread): on one runtime thread
    // they skip the cross-thread wake-ups, which made the drain about a quarter faster.
    let mut builder = if cli.command.serves_http() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("failed to start the async runtime: {error}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            logging::report_error(&error);
            ExitCode::from(commands::exit_code(&error))
        }
    }
}

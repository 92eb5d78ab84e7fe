//! The kapsync binary: parse arguments, set up logging, run the command, exit with its code.

use std::process::ExitCode;

use clap::Parser;
use kapsync::{cli::Cli, commands, exit, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
            ExitCode::from(exit::code_for(&error))
        }
    }
}

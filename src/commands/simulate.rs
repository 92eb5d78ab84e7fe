//! `kapsync simulate`: serve the local Kapture stand-in until Ctrl-C.

use crate::cli::SimulateArgs;
use crate::config::Settings;

/// Serves the simulator.
pub async fn run(_settings: &Settings, _args: SimulateArgs) -> anyhow::Result<u8> {
    Err(crate::exit::UsageError("simulate is not built yet".into()).into())
}

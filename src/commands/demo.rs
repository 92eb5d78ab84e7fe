//! `kapsync demo`.

use crate::config::Settings;

/// Runs the command.
pub async fn run(_settings: &Settings, _args: impl std::fmt::Debug) -> anyhow::Result<u8> {
    Err(crate::exit::UsageError("`demo` is not built yet".into()).into())
}

//! `kapsync simulate`: serve the local Kapture stand-in until Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;

use crate::cli::SimulateArgs;
use crate::config::Settings;
use crate::exit;
use crate::exit::UsageError;
use crate::kapture::{Token, TokenError};
use crate::simulator::{DEFAULT_HANG_FOR, Latency, SimConfig, SimError, Simulator, split_list};

/// Serves the simulator. The first stdout line is `listening on http://ADDR`, so scripts can
/// start it with `--port 0` and read the address.
pub async fn run(_settings: &Settings, args: SimulateArgs) -> anyhow::Result<u8> {
    let config = sim_config(&args)?;
    let policy = config.token_policy();
    let addr = SocketAddr::new(args.bind, args.port);
    if !args.bind.is_loopback() {
        tracing::warn!(
            "simulate is listening on {addr}, which other machines may reach: it serves the \
             tickets sent to it to anyone holding its token"
        );
        if config.token.is_none() {
            return Err(UsageError(format!(
                "refused to listen on {addr} without a token: set KAPTURE_TOKEN or pass \
                 --token-file PATH (or bind 127.0.0.1)"
            ))
            .into());
        }
    }
    let handle = Simulator::start(config, addr)
        .await
        .with_context(|| format!("failed to listen on {addr}"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", handle.base_url())?;
        writeln!(out, "{policy}")?;
        writeln!(
            out,
            "ledger: {url}/_sim/ledger  stats: {url}/_sim/stats  (Ctrl-C stops)",
            url = handle.base_url()
        )?;
        out.flush()?;
    }
    shutdown_signal().await?;
    let stats = handle.stats();
    handle.shutdown().await;
    tracing::info!(
        requests = stats.requests,
        succeeded = stats.succeeded,
        tickets = stats.tickets,
        "simulator stopped"
    );
    Ok(exit::OK)
}

/// The simulator's settings from `kapsync simulate`'s flags; the token comes from
/// `--token-file` or `KAPTURE_TOKEN`, never from a flag's value (`ps` shows those).
fn sim_config(args: &SimulateArgs) -> Result<SimConfig, SimError> {
    if args.token.is_some() {
        return Err(SimError::TokenFlag);
    }
    let token = match Token::load(args.token_file.as_deref()) {
        Ok(token) => Some(token.secret().to_owned()),
        Err(TokenError::Missing) => None,
        Err(e) => return Err(e.into()),
    };
    let config = SimConfig {
        token,
        sub_statuses: split_list(&args.sub_statuses),
        seed: args.seed,
        fail_rate: args.fail_rate,
        throttle_rate: args.throttle_rate,
        rate_limit: args.rate_limit,
        latency: args.latency.as_deref().map(Latency::parse).transpose()?,
        hang_rate: args.hang_rate,
        hang_for: DEFAULT_HANG_FOR,
        drop_rate: args.drop_rate,
        auth_fail_after: args.auth_fail_after,
        full_tickets: args.full_tickets,
    };
    config.validate()?;
    Ok(config)
}

/// Waits for Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("failed to listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("failed to listen for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("failed to listen for Ctrl-C")?;
    Ok(())
}

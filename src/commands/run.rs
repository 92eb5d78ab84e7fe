//! `kapsync run`: drain pending rows into Kapture; also the drain half of `sync` and `demo`.

use std::time::Duration;

use anyhow::Context as _;

use crate::cli::RunArgs;
use crate::config::{RunSettings, Settings};
use crate::engine::{
    self, DrainReport, EngineConfig, Halt, RetryPolicy, RunnerLock, Shutdown, StoreThread,
};
use crate::exit;
use crate::kapture::{Client, Target, Token};
use crate::report::progress::DrainDisplay;
use crate::report::text;
use crate::store::{Run, Store};

/// Extra time, beyond the request timeout, that in-flight requests get after a stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs `kapsync run`.
pub async fn run(settings: &Settings, args: RunArgs) -> anyhow::Result<u8> {
    let resolved = settings.run(&args.options)?;
    let store = super::open_existing_store(settings).await?;
    let runs = match &args.run {
        Some(name) => vec![store.resolve_run(Some(name)).await?],
        None => store.all_runs().await?,
    };
    if resolved.dry_run {
        let code = super::dry_run::run(&store, &resolved, &runs, args.json).await?;
        store.close().await;
        return Ok(code);
    }
    let client = client_for(&resolved)?;
    let reports = drain_runs(&store, settings, &resolved, &client, &runs).await?;
    if args.json {
        text::print_json(&serde_json::json!({ "runs": reports }))?;
    } else {
        text::print(&text::drain_summary(&reports))?;
    }
    store.close().await;
    Ok(exit_code(&reports))
}

/// The client for the configured target and token; both are usage errors when missing.
/// Warns once when the rate is far above what public Kapture clients use.
pub fn client_for(resolved: &RunSettings) -> anyhow::Result<Client> {
    let target = Target::resolve(resolved.subdomain.as_deref(), resolved.base_url.as_deref())?;
    if resolved.rate > engine::RATE_WARNING_ABOVE && !target.is_loopback() {
        tracing::warn!(
            "--rate {} is far above the 3-6 requests/s public Kapture clients use; Kapture \
             documents no limit, and a tenant's API may refuse or throttle such a rate",
            resolved.rate
        );
    }
    let token = Token::load(resolved.token_file.as_deref())?;
    Ok(Client::new(target, token, resolved.timeout)?)
}

/// The engine's knobs from the resolved settings.
pub fn engine_config(resolved: &RunSettings) -> EngineConfig {
    EngineConfig {
        concurrency: resolved.concurrency as usize,
        rate: resolved.rate,
        burst: resolved.burst,
        max_attempts: resolved.max_attempts,
        retry: RetryPolicy::default(),
        throttle_cap: engine::THROTTLE_CAP,
        stop_deadline: resolved.timeout + STOP_GRACE,
        unreachable_timeout: resolved.unreachable_timeout,
        canary: resolved.canary,
    }
}

/// Drains each run in turn under the runner lock, with signal handling and the progress
/// display; stops at the first run that halts or is stopped.
pub async fn drain_runs(
    store: &Store,
    settings: &Settings,
    resolved: &RunSettings,
    client: &Client,
    runs: &[Run],
) -> anyhow::Result<Vec<DrainReport>> {
    let _lock = RunnerLock::acquire(store.path())?;
    let shutdown = Shutdown::default();
    let signals = tokio::spawn(watch_signals(shutdown.clone()));
    let window = resolved.max_duration.map(|limit| {
        let graceful = shutdown.graceful.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            tracing::info!("the --max-duration window has ended; stopping gracefully");
            graceful.cancel();
        })
    });
    let config = engine_config(resolved);
    // Claims and results run on a thread of their own, shared by the runs drained here.
    let store_thread = StoreThread::start();
    let mut reports = Vec::new();
    for run in runs {
        let (sender, receiver) = tokio::sync::watch::channel(engine::Progress::default());
        let display = DrainDisplay::start(&run.name, receiver, settings.progress);
        let report = engine::drain(
            store,
            client,
            run,
            &config,
            &shutdown,
            sender,
            &store_thread.handle(),
        )
        .await;
        display.finish();
        let report = report.with_context(|| format!("failed to drain run {}", run.name))?;
        if report.idle() {
            // A run with nothing open is left out of the summary.
            continue;
        }
        let stop = report.halt.is_some() || report.stopped;
        reports.push(report);
        if stop {
            break;
        }
    }
    signals.abort();
    if let Some(window) = window {
        window.abort();
    }
    Ok(reports)
}

/// First Ctrl-C or SIGTERM: graceful stop. Second: abort.
async fn watch_signals(shutdown: Shutdown) {
    for token in [shutdown.graceful, shutdown.abort] {
        if wait_for_signal().await.is_err() {
            return;
        }
        if !token.is_cancelled() {
            tracing::warn!("stop requested: finishing requests in flight (again to stop at once)");
        }
        token.cancel();
    }
}

async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}

/// The exit code of a drain: halts and stops outrank row failures.
pub fn exit_code(reports: &[DrainReport]) -> u8 {
    let mut code = exit::OK;
    for r in reports {
        match &r.halt {
            Some(Halt::Auth { .. } | Halt::Forbidden { .. }) => return exit::AUTH_HALT,
            Some(Halt::Unreachable { .. }) => return exit::UNREACHABLE,
            Some(halt) if halt.is_usage() => return exit::USAGE,
            Some(_) | None => {}
        }
        if r.stopped && r.counts.pending + r.counts.in_flight > 0 {
            return exit::STOPPED;
        }
        if r.counts.failed + r.counts.invalid > 0 || r.counts.pending + r.counts.in_flight > 0 {
            code = exit::ROWS_FAILED;
        }
    }
    code
}

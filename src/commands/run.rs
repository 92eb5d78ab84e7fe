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
use crate::store::{self, DrainSettings, Run, Store};

/// Extra time, beyond the request timeout, that in-flight requests get after a stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs `kapsync run`.
pub async fn run(settings: &Settings, args: RunArgs) -> anyhow::Result<u8> {
    let resolved = settings.run(&args.options)?;
    let store = super::open_existing_store(settings).await?;
    let runs = match &args.run {
        Some(name) => {
            let run = store.resolve_run(Some(name)).await?;
            with_earlier_runs(&store, run).await?
        }
        None => store.open_runs().await?,
    };
    let hints = hints(settings, &resolved);
    if resolved.dry_run {
        let code = super::dry_run::run(&store, &resolved, &hints.prefix, &runs, args.json).await?;
        store.close().await;
        return Ok(code);
    }
    let destination = super::target::resolve(&store, &resolved, &hints.prefix).await?;
    let client = client_for(destination.target.clone(), &resolved)?;
    let reports = drain_runs(
        &store,
        settings,
        &resolved,
        &client,
        &runs,
        Some(&destination),
    )
    .await?;
    let resolved_failures = resolved_failures(&store, &reports).await?;
    if args.json {
        text::print_json(&serde_json::json!({ "runs": reports }))?;
    } else {
        text::print(&text::drain_summary(&reports, &resolved_failures, &hints))?;
    }
    store.close().await;
    Ok(exit_code(&reports, &resolved_failures))
}

/// What the hints of a drain's summary start with: the settings a pasted command needs.
pub fn hints(settings: &Settings, resolved: &RunSettings) -> text::Hints {
    let mut run_flags = String::new();
    if let Some(path) = &resolved.token_file {
        run_flags.push_str(" --token-file ");
        run_flags.push_str(&text::shell_word(&path.display().to_string()));
    }
    text::Hints {
        prefix: super::hint_prefix(settings),
        run_flags,
    }
}

/// Per report, how many of its run's failed rows are resolved by a later row of their sync key.
pub async fn resolved_failures(store: &Store, reports: &[DrainReport]) -> anyhow::Result<Vec<i64>> {
    let mut out = Vec::with_capacity(reports.len());
    for report in reports {
        let n = match store.find_run(&report.run).await? {
            Some(run) if report.counts.failed > 0 => store.resolved_failures(run.id).await?,
            _ => 0,
        };
        out.push(n);
    }
    Ok(out)
}

/// The client for the target and the configured token; a missing token is a usage error.
/// Logs one line saying where requests go, where that was set and through which proxy: a
/// kapsync.toml in the working directory can name the target, so a person can see it.
/// Warns once when the rate is far above what public Kapture clients use.
pub fn client_for(target: Target, resolved: &RunSettings) -> anyhow::Result<Client> {
    if resolved.rate > engine::RATE_WARNING_ABOVE && !target.is_loopback() {
        tracing::warn!(
            "--rate {} is far above the 3-6 requests/s public Kapture clients use; Kapture \
             documents no limit, and a tenant's API may refuse or throttle such a rate",
            resolved.rate
        );
    }
    let token = Token::load(resolved.token_file.as_deref())?;
    let client = Client::with_proxy(target, token, resolved.timeout, resolved.proxy.as_deref())
        .map_err(|e| crate::exit::UsageError(e.to_string()))?
        .keep_responses(resolved.keep_responses);
    tracing::info!("{}", route_line(&client, &resolved.target_origin));
    Ok(client)
}

/// `sending to URL (target from ORIGIN; no proxy | through proxy URL (WHENCE))`.
pub fn route_line(client: &Client, origin: &str) -> String {
    let via = match client.proxy() {
        Some(proxy) => format!("through proxy {proxy}"),
        None => "no proxy".to_owned(),
    };
    format!(
        "sending to {} (target from {origin}; {via})",
        client.target().base_url()
    )
}

/// The engine's knobs from the resolved settings.
pub fn engine_config(resolved: &RunSettings, hint_prefix: String) -> EngineConfig {
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
        hint_prefix,
        record_limits: None,
    }
}

/// What a drain runs with, recorded for `kapsync report` (never the token).
fn drain_settings(resolved: &RunSettings, client: &Client) -> DrainSettings {
    DrainSettings {
        target: client.target().base_url().to_owned(),
        rate: resolved.rate,
        burst: resolved.burst.into(),
        concurrency: resolved.concurrency.into(),
        max_attempts: resolved.max_attempts.into(),
        timeout_secs: resolved.timeout.as_secs() as i64,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// The runs to drain to send `run`: the runs holding earlier open rows of its tickets (and
/// those theirs wait on), oldest first, then `run` itself. A row is never sent while an
/// earlier row of its ticket in any run is pending or in flight, so `run --run NAME` sends
/// those earlier rows too rather than wait for them forever; it says so on stderr.
pub async fn with_earlier_runs(store: &Store, run: Run) -> anyhow::Result<Vec<Run>> {
    let mut runs = vec![run];
    let mut next = 0;
    while next < runs.len() {
        let waiting = runs[next].clone();
        next += 1;
        for (holder, rows) in store.runs_holding_earlier_rows(waiting.id).await? {
            if runs.iter().any(|r| r.id == holder.id) {
                continue;
            }
            tracing::warn!(
                "{rows} rows of run {} wait on earlier rows of their tickets in run {}: \
                 sending those first",
                waiting.name,
                holder.name
            );
            runs.push(holder);
        }
    }
    // Oldest first: the order `open_runs` gives, restricted to these runs.
    let order = store.open_runs().await?;
    runs.sort_by_key(|r| {
        order
            .iter()
            .position(|o| o.id == r.id)
            .unwrap_or(usize::MAX)
    });
    Ok(runs)
}

/// Most passes over the runs of one command. A pass drains each run in turn; a row released
/// by a later run's drain in a run drained before it (rows synced into an older run after a
/// newer one) is sent by the next pass.
const MAX_PASSES: usize = 8;

/// Drains each run in turn under the runner lock, with signal handling and the progress
/// display; stops at the first run that halts or is stopped. Runs left with due rows (released
/// by a run drained after them) are drained again.
pub async fn drain_runs(
    store: &Store,
    settings: &Settings,
    resolved: &RunSettings,
    client: &Client,
    runs: &[Run],
    destination: Option<&super::target::Destination>,
) -> anyhow::Result<Vec<DrainReport>> {
    let _lock = RunnerLock::acquire(store.path())?;
    if let Some(destination) = destination {
        destination.record_retarget(store).await?;
    }
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
    let config = engine_config(resolved, super::hint_prefix(settings));
    // Claims and results run on a thread of their own, shared by the runs drained here.
    let store_thread = StoreThread::start();
    let mut reports: Vec<DrainReport> = Vec::new();
    let mut pass: Vec<Run> = runs.to_vec();
    'passes: for _ in 0..MAX_PASSES {
        let mut sent = false;
        for run in &pass {
            let (sender, receiver) = tokio::sync::watch::channel(engine::Progress::default());
            let display = DrainDisplay::start(&run.name, receiver, settings.progress);
            let session = store
                .drain_started(run.id, &drain_settings(resolved, client))
                .await?;
            let drain_config = EngineConfig {
                record_limits: Some(session),
                ..config.clone()
            };
            let report = engine::drain(
                store,
                client,
                run,
                &drain_config,
                &shutdown,
                sender,
                &store_thread.handle(),
            )
            .await;
            display.finish();
            let idle = report.as_ref().is_ok_and(DrainReport::idle);
            store.drain_ended(session, idle).await?;
            let report = report.with_context(|| format!("failed to drain run {}", run.name))?;
            if report.idle() {
                // A run with nothing open is left out of the summary.
                continue;
            }
            sent |= report.requests > 0;
            let stop = report.halt.is_some() || report.stopped;
            merge_report(&mut reports, report);
            if stop {
                break 'passes;
            }
        }
        let mut again = Vec::new();
        for run in &pass {
            if store.waiting(run.id, store::now_ms()).await?.0 {
                again.push(run.clone());
            }
        }
        if !sent || again.is_empty() {
            break;
        }
        pass = again;
    }
    signals.abort();
    if let Some(window) = window {
        window.abort();
    }
    if let Some(destination) = destination {
        destination.record_first(store, &reports).await?;
    }
    Ok(reports)
}

/// Adds a run's report to the list, or folds it into the report of an earlier pass over the
/// same run: the run is listed once, with everything sent to it and its latest counts.
fn merge_report(reports: &mut Vec<DrainReport>, report: DrainReport) {
    let Some(earlier) = reports.iter_mut().find(|r| r.run == report.run) else {
        reports.push(report);
        return;
    };
    earlier.duration_ms += report.duration_ms;
    earlier.requests += report.requests;
    earlier.succeeded += report.succeeded;
    earlier.failed += report.failed;
    earlier.replayed += report.replayed;
    earlier.throttle_events += report.throttle_events;
    earlier.halt = report.halt;
    earlier.stopped = report.stopped;
    earlier.counts = report.counts;
    if !report.top_errors.is_empty() {
        earlier.top_errors = report.top_errors;
    }
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

/// The exit code of a drain: halts and stops outrank row failures. `resolved[i]` of report
/// `i`'s failed rows are resolved by a later row of their sync key and do not count.
pub fn exit_code(reports: &[DrainReport], resolved: &[i64]) -> u8 {
    let mut code = exit::OK;
    for (i, r) in reports.iter().enumerate() {
        let open_failed = r.counts.failed - resolved.get(i).copied().unwrap_or(0);
        match &r.halt {
            Some(Halt::Auth { .. } | Halt::Forbidden { .. }) => return exit::AUTH_HALT,
            Some(Halt::Unreachable { .. }) => return exit::UNREACHABLE,
            Some(halt) if halt.is_usage() => return exit::USAGE,
            Some(_) | None => {}
        }
        if r.stopped && r.counts.pending + r.counts.in_flight > 0 {
            return exit::STOPPED;
        }
        if open_failed + r.counts.invalid > 0 || r.counts.pending + r.counts.in_flight > 0 {
            code = exit::ROWS_FAILED;
        }
    }
    code
}

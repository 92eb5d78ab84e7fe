//! The drain loop: claim rows, send each through the rate limiter, classify, record.
//!
//! One dispatcher claims rows in id order (the store keeps each ticket's rows in order) into a
//! queue that `concurrency` long-lived workers take from; each worker awaits the rate limiter
//! right before its request. Outcomes go to one writer task that stores them in
//! batched transactions. The dispatcher and the writer run on a thread of their own, the
//! workers on the caller's runtime. Nothing that matters lives only in memory: a row is `in_flight` in
//! the table before its request goes out, and its outcome is committed before it counts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::policy::{RateControl, RetryPolicy};
use crate::kapture::{Class, Client, Reply};
use crate::store::{
    AttemptRecord, Claimed, Counts, Cursor, Next, Outcome, Run, Store, StoreError, now_ms,
};

/// Rows claimed per store round trip, at most.
const CLAIM_BATCH: usize = 512;
/// Outcomes written per transaction, at most.
const WRITE_BATCH: usize = 2000;
/// How long the writer waits for more outcomes before it writes a batch.
const WRITE_LINGER: Duration = Duration::from_millis(10);
/// Longest the dispatcher sleeps before looking at the table again.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// 404/405 answers before any success that mean the target is wrong, not the rows.
const CONFIG_STREAK_BEFORE_SUCCESS: u32 = 3;
/// 404/405 answers in a row, after successes, that halt the run.
const CONFIG_STREAK: u32 = 10;
/// Most distinct errors tracked for the summary.
const ERROR_KINDS: usize = 100;

/// How the engine runs: the knobs, as resolved settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Requests per second; 0 means no limit.
    pub rate: u32,
    pub burst: u32,
    /// Attempts per row before it is failed.
    pub max_attempts: u32,
    pub retry: RetryPolicy,
    /// Longest pause a 429 can impose.
    pub throttle_cap: Duration,
    /// How long in-flight requests may take to finish after a stop.
    pub stop_deadline: Duration,
}

/// Stop signals, owned by the caller so tests can trigger them: `graceful` stops claiming and
/// lets in-flight requests finish; `abort` stops at once.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    pub graceful: CancellationToken,
    pub abort: CancellationToken,
}

/// Why a run halted before its work was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Halt {
    /// Kapture refused the key (invalid or expired).
    Auth { message: String },
    /// Kapture refused permission.
    Forbidden { message: String },
    /// Every answer is 404/405: the subdomain or base URL is wrong.
    Config { http_status: u16, message: String },
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Halt::Auth { message } => write!(
                f,
                "Kapture refused the API key ({message}): it is invalid or expired. Set a valid \
                 KAPTURE_TOKEN (or --token-file) and run again; the run resumes where it stopped"
            ),
            Halt::Forbidden { message } => write!(
                f,
                "Kapture refused permission ({message}): the key lacks permission to update \
                 tickets. Fix the key's role and run again; the run resumes where it stopped"
            ),
            Halt::Config {
                http_status,
                message,
            } => write!(
                f,
                "every request is answered HTTP {http_status} ({message}): the subdomain or \
                 --base-url is probably wrong. Fix it and run again; the affected rows are \
                 pending again (rows failed before the halt: kapsync retry --class rejected)"
            ),
        }
    }
}

/// A snapshot of a drain's progress, sent after every stored batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Progress {
    /// Rows pending or in flight when the drain started.
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Rows scheduled to be sent again later.
    pub waiting: u64,
    /// Requests sent.
    pub requests: u64,
    /// The effective rate limit (None: no limit).
    pub rate_limit: Option<f64>,
}

impl Progress {
    /// Rows finished (succeeded or failed) in this drain.
    pub fn done(&self) -> u64 {
        self.succeeded + self.failed
    }
}

/// One kind of error and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    pub class: String,
    pub message: String,
    pub count: u64,
}

/// The result of draining one run.
#[derive(Debug, Clone, Serialize)]
pub struct DrainReport {
    pub run: String,
    pub duration_ms: u64,
    pub requests: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Rows found in flight after a runner died and sent again.
    pub replayed: u64,
    pub throttle_events: u64,
    pub halt: Option<Halt>,
    /// Stopped by a signal or the time window.
    pub stopped: bool,
    /// The run's rows per state after the drain.
    pub counts: Counts,
    pub top_errors: Vec<ErrorCount>,
}

impl DrainReport {
    /// Whether the run had nothing to send: no request, no row open.
    pub fn idle(&self) -> bool {
        self.requests == 0
            && self.replayed == 0
            && self.halt.is_none()
            && !self.stopped
            && self.counts.pending == 0
            && self.counts.in_flight == 0
    }

    /// Requests per second over the drain.
    pub fn mean_rate(&self) -> f64 {
        if self.duration_ms == 0 {
            0.0
        } else {
            self.requests as f64 * 1000.0 / self.duration_ms as f64
        }
    }
}

/// A drain that could not go on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the workers and the writer share.
struct Shared {
    client: Client,
    rate: Arc<RateControl>,
    config: EngineConfig,
    /// Cancelled on a graceful stop or a halt: no request starts after it.
    stop_sending: CancellationToken,
    halt: Mutex<Option<Halt>>,
    config_check: Mutex<ConfigCheck>,
    results: mpsc::UnboundedSender<Outcome>,
    requests: Arc<AtomicU64>,
    /// Requests being sent (or waiting for the rate limiter) right now.
    sending: AtomicUsize,
    errors: Mutex<HashMap<(String, String), u64>>,
}

/// Tells a wrong target (every answer 404/405) from rows Kapture rejects one by one.
#[derive(Debug, Default)]
struct ConfigCheck {
    successes: u64,
    streak: u32,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn halt(&self, halt: Halt) {
        let mut slot = lock(&self.halt);
        if slot.is_none() {
            tracing::error!("halting: {halt}");
            *slot = Some(halt);
        }
        self.stop_sending.cancel();
    }

    fn note_error(&self, class: &str, message: &str) {
        let mut errors = lock(&self.errors);
        let short: String = message.chars().take(160).collect();
        let key = (class.to_owned(), short);
        if let Some(n) = errors.get_mut(&key) {
            *n += 1;
        } else if errors.len() < ERROR_KINDS {
            errors.insert(key, 1);
        }
    }

    /// Turns a reply into the row's next state.
    fn decide(&self, row: &Claimed, reply: Reply, started_ms: i64) -> Outcome {
        let now = now_ms();
        let status = reply.http_status;
        let message = reply.message.clone().unwrap_or_else(|| match status {
            Some(s) => format!("HTTP {s}"),
            None => "no answer".to_owned(),
        });
        let attempt = u32::try_from(row.attempt).unwrap_or(u32::MAX);
        let record = AttemptRecord {
            attempt: row.attempt,
            started_ms,
            duration_ms: reply.elapsed.as_millis() as i64,
            http_status: status,
            class: reply.class.as_str(),
            in_doubt: reply.class == Class::TransientInDoubt,
            // A success's body is the ticket snapshot, kept whole on the row: no second copy.
            excerpt: if reply.class == Class::Success {
                String::new()
            } else {
                reply.excerpt
            },
        };
        let later = |wait: Duration| now + wait.as_millis() as i64;
        let next = match reply.class {
            Class::Success => {
                self.rate.on_accepted();
                let mut check = lock(&self.config_check);
                check.successes += 1;
                check.streak = 0;
                Next::Succeeded {
                    response: reply.ticket.map(|t| t.to_string()),
                }
            }
            Class::Rejected if matches!(status, Some(404 | 405)) => {
                self.rate.on_accepted();
                let (suspect, halt) = {
                    let mut check = lock(&self.config_check);
                    check.streak += 1;
                    let suspect = check.successes == 0;
                    let limit = if suspect {
                        CONFIG_STREAK_BEFORE_SUCCESS
                    } else {
                        CONFIG_STREAK
                    };
                    (suspect, check.streak >= limit)
                };
                if halt {
                    self.halt(Halt::Config {
                        http_status: status.unwrap_or(404),
                        message: message.clone(),
                    });
                }
                self.note_error("rejected", &message);
                if suspect {
                    Next::Requeue {
                        at_ms: 0,
                        class: Some("rejected".into()),
                        message: Some(message),
                    }
                } else {
                    Next::Failed {
                        class: "rejected".into(),
                        message,
                    }
                }
            }
            Class::Rejected => {
                self.rate.on_accepted();
                lock(&self.config_check).streak = 0;
                self.note_error("rejected", &message);
                Next::Failed {
                    class: "rejected".into(),
                    message,
                }
            }
            Class::Auth | Class::Forbidden => {
                self.note_error(reply.class.as_str(), &message);
                self.halt(if reply.class == Class::Auth {
                    Halt::Auth {
                        message: message.clone(),
                    }
                } else {
                    Halt::Forbidden {
                        message: message.clone(),
                    }
                });
                Next::Requeue {
                    at_ms: 0,
                    class: Some(reply.class.as_str().into()),
                    message: Some(message),
                }
            }
            Class::Throttled { retry_after } => {
                self.note_error("throttled", &message);
                let wait = self
                    .rate
                    .on_throttled(retry_after, self.config.retry.delay(attempt));
                Next::Requeue {
                    at_ms: later(wait),
                    class: Some("throttled".into()),
                    message: Some(message),
                }
            }
            Class::Transient | Class::TransientInDoubt => {
                self.rate.on_accepted();
                let class = reply.class.as_str();
                self.note_error(class, &message);
                if attempt >= self.config.max_attempts {
                    Next::Failed {
                        class: class.into(),
                        message: format!("{message} (gave up after {attempt} attempts)"),
                    }
                } else {
                    Next::Retry {
                        at_ms: later(self.config.retry.delay(attempt)),
                        class: class.into(),
                        message,
                    }
                }
            }
        };
        Outcome {
            job_id: row.id,
            http_status: status,
            next,
            attempt: Some(record),
        }
    }
}

/// A claimed row that is put back without being sent.
fn unsent(row: &Claimed) -> Outcome {
    Outcome {
        job_id: row.id,
        http_status: None,
        next: Next::Requeue {
            at_ms: 0,
            class: None,
            message: None,
        },
        attempt: None,
    }
}

/// Sends one row when the rate allows, unless sending has stopped.
async fn send_one(row: Claimed, shared: &Shared) {
    tokio::select! {
        biased;
        () = shared.stop_sending.cancelled() => {
            let _ = shared.results.send(unsent(&row));
            return;
        }
        () = shared.rate.ready() => {}
    }
    if shared.stop_sending.is_cancelled() {
        let _ = shared.results.send(unsent(&row));
        return;
    }
    let started = now_ms();
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let reply = shared.client.update_ticket(&row.payload).await;
    let outcome = shared.decide(&row, reply, started);
    let _ = shared.results.send(outcome);
}

/// Claimed rows waiting for a worker. The dispatcher tops it up; workers take from the front.
struct Queue {
    rows: Mutex<VecDeque<Claimed>>,
    /// Below this many queued rows the dispatcher claims more.
    low_water: usize,
    /// Woken when rows are added.
    filled: Notify,
    /// Woken when a worker leaves the queue below its low water mark.
    low: Notify,
}

impl Queue {
    fn new(low_water: usize) -> Queue {
        Queue {
            rows: Mutex::new(VecDeque::new()),
            low_water,
            filled: Notify::new(),
            low: Notify::new(),
        }
    }

    fn len(&self) -> usize {
        lock(&self.rows).len()
    }

    fn push(&self, rows: Vec<Claimed>) {
        lock(&self.rows).extend(rows);
        self.filled.notify_waiters();
    }

    /// Takes every row no worker took (the drain then stops sending, which ends the workers).
    fn take_all(&self) -> Vec<Claimed> {
        lock(&self.rows).drain(..).collect()
    }

    /// The next row, or None once sending has stopped.
    async fn next(&self, stop: &CancellationToken) -> Option<Claimed> {
        loop {
            let filled = self.filled.notified();
            tokio::pin!(filled);
            // Registered before looking, so a push between the look and the wait still wakes.
            filled.as_mut().enable();
            if stop.is_cancelled() {
                return None;
            }
            let (row, left) = {
                let mut rows = lock(&self.rows);
                (rows.pop_front(), rows.len())
            };
            if let Some(row) = row {
                if left < self.low_water {
                    self.low.notify_one();
                }
                return Some(row);
            }
            tokio::select! {
                () = filled => {}
                () = stop.cancelled() => return None,
            }
        }
    }
}

/// A long-lived worker: takes rows from the queue and sends them one at a time.
async fn worker(shared: Arc<Shared>, queue: Arc<Queue>) {
    while let Some(row) = queue.next(&shared.stop_sending).await {
        shared.sending.fetch_add(1, Ordering::Relaxed);
        send_one(row, &shared).await;
        shared.sending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bookkeeping the writer keeps and the dispatcher reads.
#[derive(Debug, Default)]
struct Tally {
    progress: Progress,
    /// Rows claimed whose outcome is not stored yet.
    outstanding: u64,
    /// Rows scheduled to be sent again, by id.
    waiting: HashSet<i64>,
}

/// What the writer updates besides the table.
struct WriterContext {
    tally: Arc<Mutex<Tally>>,
    /// Woken after every stored batch: finished rows may unblock later rows of their ticket.
    stored: Arc<Notify>,
    progress: watch::Sender<Progress>,
    requests: Arc<AtomicU64>,
    rate: Arc<RateControl>,
    /// Cancelled when results cannot be stored.
    stop_sending: CancellationToken,
}

/// Stores outcomes in batches until every sender is gone.
async fn writer(
    store: Store,
    mut results: mpsc::UnboundedReceiver<Outcome>,
    cx: WriterContext,
) -> Result<(), StoreError> {
    let WriterContext {
        tally,
        stored,
        progress,
        requests,
        rate,
        stop_sending,
    } = cx;
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while results.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        // A moment for more outcomes to arrive: a transaction per handful of rows cost the
        // SQLite thread more than the rows themselves.
        if batch.len() < WRITE_BATCH {
            tokio::time::sleep(WRITE_LINGER).await;
            while batch.len() < WRITE_BATCH {
                match results.try_recv() {
                    Ok(outcome) => batch.push(outcome),
                    Err(_) => break,
                }
            }
        }
        if let Err(error) = store.record_outcomes(&batch).await {
            // Nothing more may be sent whose outcome cannot be kept; the rows stay in
            // flight and are replayed by the next runner.
            tracing::error!("failed to store results, stopping: {error}");
            stop_sending.cancel();
            return Err(error);
        }
        let snapshot = {
            let mut tally = lock(&tally);
            for outcome in &batch {
                match &outcome.next {
                    Next::Succeeded { .. } => tally.progress.succeeded += 1,
                    Next::Failed { .. } => tally.progress.failed += 1,
                    Next::Retry { .. } | Next::Requeue { .. } => {
                        tally.waiting.insert(outcome.job_id);
                    }
                }
                if matches!(outcome.next, Next::Succeeded { .. } | Next::Failed { .. }) {
                    tally.waiting.remove(&outcome.job_id);
                }
            }
            tally.outstanding = tally.outstanding.saturating_sub(batch.len() as u64);
            tally.progress.waiting = tally.waiting.len() as u64;
            tally.progress.requests = requests.load(Ordering::Relaxed);
            tally.progress.rate_limit = rate.effective();
            tally.progress
        };
        let _ = progress.send(snapshot);
        stored.notify_one();
        batch.clear();
    }
    Ok(())
}

/// Drains the pending rows of one run until none is left, the run halts, or `shutdown` fires.
pub async fn drain(
    store: &Store,
    client: &Client,
    run: &Run,
    config: &EngineConfig,
    shutdown: &Shutdown,
    progress: watch::Sender<Progress>,
) -> Result<DrainReport, EngineError> {
    let started = Instant::now();
    let replayed = store.requeue_orphans(run.id, now_ms()).await?;
    if replayed > 0 {
        tracing::warn!(
            rows = replayed,
            "rows were in flight when an earlier runner died; sending them again (replayed)"
        );
    }
    let at_start = store.counts(run.id).await?;
    let total = (at_start.pending + at_start.in_flight) as u64;
    if total == 0 {
        // Nothing to send: the counts just read are the report's (one scan of the run, not two).
        return Ok(DrainReport {
            run: run.name.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
            requests: 0,
            succeeded: 0,
            failed: 0,
            replayed,
            throttle_events: 0,
            halt: None,
            stopped: false,
            counts: at_start,
            top_errors: Vec::new(),
        });
    }
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        client: client.clone(),
        rate: Arc::new(RateControl::new(
            config.rate,
            config.burst,
            config.throttle_cap,
        )),
        config: config.clone(),
        stop_sending: shutdown.graceful.child_token(),
        halt: Mutex::new(None),
        config_check: Mutex::new(ConfigCheck::default()),
        results: results_tx,
        requests: Arc::new(AtomicU64::new(0)),
        sending: AtomicUsize::new(0),
        errors: Mutex::new(HashMap::new()),
    });
    let tally = Arc::new(Mutex::new(Tally {
        progress: Progress {
            total,
            rate_limit: shared.rate.effective(),
            ..Progress::default()
        },
        ..Tally::default()
    }));
    let _ = progress.send(lock(&tally).progress);
    let stored = Arc::new(Notify::new());
    // The store's side (claims, results) runs on its own thread, the requests on the caller's:
    // a claim is several round trips to SQLite's thread, and queued behind thousands of
    // request tasks each of them waited long enough for the workers to run dry.
    let store_side = store_runtime();
    // Should this future be dropped, the store side stops claiming too.
    let _stop_on_drop = shared.stop_sending.clone().drop_guard();
    let writer_task = store_side.spawn(writer(
        store.clone(),
        results_rx,
        WriterContext {
            tally: tally.clone(),
            stored: stored.clone(),
            progress,
            requests: shared.requests.clone(),
            rate: shared.rate.clone(),
            stop_sending: shared.stop_sending.clone(),
        },
    ));

    let dispatched = match store_side
        .spawn(dispatch(
            Dispatch {
                store: store.clone(),
                run_id: run.id,
                config: config.clone(),
                shared: shared.clone(),
                tally: tally.clone(),
                stored,
            },
            tokio::runtime::Handle::current(),
        ))
        .await
    {
        Ok(dispatched) => dispatched,
        Err(join) => Err((JoinSet::new(), join_error("dispatcher", &join))),
    };
    let mut tasks = match dispatched {
        Ok(tasks) => tasks,
        Err((tasks, error)) => {
            shared.stop_sending.cancel();
            finish_tasks(tasks, config, shutdown, &shared.sending).await;
            drop(shared);
            let _ = writer_task.await;
            return Err(error.into());
        }
    };
    if shutdown.graceful.is_cancelled() {
        tracing::info!(
            in_flight = shared.sending.load(Ordering::Relaxed),
            "stopping: no new requests; waiting for those in flight"
        );
    }
    shared.stop_sending.cancel();
    tasks = finish_tasks(tasks, config, shutdown, &shared.sending).await;
    drop(tasks);

    let requests = shared.requests.load(Ordering::Relaxed);
    let halt = lock(&shared.halt).clone();
    let throttle_events = shared.rate.throttle_events();
    let mut top_errors: Vec<ErrorCount> = lock(&shared.errors)
        .iter()
        .map(|((class, message), count)| ErrorCount {
            class: class.clone(),
            message: message.clone(),
            count: *count,
        })
        .collect();
    top_errors.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.message.cmp(&b.message))
    });
    top_errors.truncate(5);
    drop(shared);
    match writer_task.await {
        Ok(result) => result?,
        Err(join) => return Err(join_error("result writer", &join).into()),
    }
    let counts = store.counts(run.id).await?;
    let progress = lock(&tally).progress;
    Ok(DrainReport {
        run: run.name.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        requests,
        succeeded: progress.succeeded,
        failed: progress.failed,
        replayed,
        throttle_events,
        halt,
        stopped: shutdown.graceful.is_cancelled(),
        counts,
        top_errors,
    })
}

/// What the dispatcher owns: it runs on the store's thread.
struct Dispatch {
    store: Store,
    run_id: i64,
    config: EngineConfig,
    shared: Arc<Shared>,
    tally: Arc<Mutex<Tally>>,
    stored: Arc<Notify>,
}

/// The runtime the store's side of every drain runs on: one thread of its own, started on
/// first use. Falls back to the caller's runtime if a thread cannot be started.
fn store_runtime() -> tokio::runtime::Handle {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kapsync-store")
            .enable_all()
            .build()
            .inspect_err(|error| {
                tracing::warn!(
                    "failed to start the store thread, sharing the request thread: {error}"
                )
            })
            .ok()
    });
    match runtime {
        Some(runtime) => runtime.handle().clone(),
        None => tokio::runtime::Handle::current(),
    }
}

/// A store-side task that panicked or was cancelled, as a store error.
fn join_error(what: &str, join: &tokio::task::JoinError) -> StoreError {
    StoreError::Query(sqlx::Error::Protocol(format!("the {what} stopped: {join}")))
}

/// The dispatcher: starts the workers, then keeps their queue topped up with claimed rows
/// until the run is done or stops.
async fn dispatch(
    Dispatch {
        store,
        run_id,
        config,
        shared,
        tally,
        stored,
    }: Dispatch,
    requests: tokio::runtime::Handle,
) -> Result<JoinSet<()>, (JoinSet<()>, StoreError)> {
    let workers = config.concurrency.max(1);
    // A whole batch per round trip: claiming one row per free worker would cost three
    // statements a row. Claimed rows wait in the queue at most a few requests long.
    let batch = (workers * 8).clamp(1, CLAIM_BATCH);
    let queue = Arc::new(Queue::new((batch / 2).max(1)));
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        tasks.spawn_on(worker(shared.clone(), queue.clone()), &requests);
    }
    let mut cursor = Cursor::default();
    let result = loop {
        if shared.stop_sending.is_cancelled() {
            break Ok(());
        }
        let queued = queue.len();
        if queued >= queue.low_water {
            tokio::select! {
                () = shared.stop_sending.cancelled() => break Ok(()),
                () = queue.low.notified() => {}
            }
            continue;
        }
        let limit = (batch - queued) as i64;
        let rows = match store.claim(run_id, &mut cursor, limit, now_ms()).await {
            Ok(rows) => rows,
            Err(error) => break Err(error),
        };
        if !rows.is_empty() {
            let mut t = lock(&tally);
            t.outstanding += rows.len() as u64;
            for row in &rows {
                t.waiting.remove(&row.id);
            }
            drop(t);
            queue.push(rows);
            continue;
        }
        // Nothing claimable now: finished, or waiting for retries or for earlier rows.
        let outstanding = lock(&tally).outstanding;
        let (any_waiting, next_due) = match store.waiting(run_id, now_ms()).await {
            Ok(waiting) => waiting,
            Err(error) => break Err(error),
        };
        if outstanding == 0 && cursor.exhausted && !any_waiting {
            break Ok(());
        }
        let wait = match next_due {
            Some(due) if outstanding == 0 => {
                Duration::from_millis((due - now_ms()).clamp(1, 60_000) as u64)
            }
            _ => IDLE_POLL,
        };
        tokio::select! {
            () = shared.stop_sending.cancelled() => break Ok(()),
            () = stored.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    };
    // Rows claimed but not taken by a worker go back untouched.
    for row in queue.take_all() {
        let _ = shared.results.send(unsent(&row));
    }
    match result {
        Ok(()) => Ok(tasks),
        Err(error) => Err((tasks, error)),
    }
}

/// Waits for in-flight requests: until they finish, the stop deadline passes, or an abort.
async fn finish_tasks(
    mut tasks: JoinSet<()>,
    config: &EngineConfig,
    shutdown: &Shutdown,
    sending: &AtomicUsize,
) -> JoinSet<()> {
    let deadline = tokio::time::sleep(config.stop_deadline);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            () = &mut deadline, if shutdown.graceful.is_cancelled() => {
                tracing::warn!(
                    left = sending.load(Ordering::Relaxed),
                    "stop deadline passed; abandoning requests in flight"
                );
                tasks.abort_all();
                break;
            }
            () = shutdown.abort.cancelled() => {
                tasks.abort_all();
                break;
            }
        }
    }
    tasks
}

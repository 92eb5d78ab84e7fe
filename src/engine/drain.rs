//! One drain of one run: set up the tasks, watch them until they are done, report.
//!
//! The dispatcher ([`super::dispatch`]) claims rows in id order and hands them to
//! `concurrency` long-lived workers ([`super::worker`]), each of which awaits the rate limiter
//! right before its request. Outcomes go to one writer task ([`super::writer`]) that stores
//! them in batched transactions. The dispatcher and the writer run on the store's thread
//! (handed in by the command), the workers on the caller's runtime. Nothing that matters lives
//! only in memory: a row is `in_flight` in the table before its request goes out, and its
//! outcome is committed before it counts.
//!
//! Every way a drain ends is in [`watch`]'s one loop: done, stopped, halted, past the stop
//! deadline, aborted, or a task that failed or panicked.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::dispatch::{Dispatch, batch_size, chain_size, dispatch};
use super::events::{
    DrainReport, EngineConfig, EngineError, Progress, Shutdown, Tally, TestPanic, lock,
};
use super::queue::{Taker, queue, unsent};
use super::report::{self, Sent};
use super::worker::{Shared, worker};
use super::writer::{LimitLog, WriterContext, writer};
use crate::kapture::Client;
use crate::store::{Run, Store, StoreError, now_ms};

/// Drains the pending rows of one run until none is left, the run halts, or `shutdown` fires.
/// The dispatcher and the writer run on `store_side` (see [`super::StoreThread`]).
pub async fn drain(
    store: &Store,
    client: &Client,
    run: &Run,
    config: &EngineConfig,
    shutdown: &Shutdown,
    progress: watch::Sender<Progress>,
    store_side: &Handle,
) -> Result<DrainReport, EngineError> {
    // Statement journals in memory and a larger page cache: see `Store::tune_for_drain`.
    store.tune_for_drain(true).await?;
    let drained = drain_run(store, client, run, config, shutdown, progress, store_side).await;
    if let Err(error) = store.tune_for_drain(false).await {
        tracing::debug!("failed to put temporary files back on disk: {error}");
    }
    drained
}

async fn drain_run(
    store: &Store,
    client: &Client,
    run: &Run,
    config: &EngineConfig,
    shutdown: &Shutdown,
    progress: watch::Sender<Progress>,
    store_side: &Handle,
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
        return Ok(report::nothing_to_send(run, started, replayed, at_start));
    }
    let test_panic = TestPanic::from_env();
    let (results, results_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared::new(
        run.name.clone(),
        client.clone(),
        config.clone(),
        shutdown.graceful.child_token(),
        results,
        test_panic,
    ));
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
    // Should this future be dropped, the store side stops claiming too.
    let _stop_on_drop = shared.stop_sending.clone().drop_guard();
    let workers = config.concurrency.max(1);
    let batch = batch_size(workers);
    let (feeder, queued) = queue((batch / 2).max(1));
    let writer_task = store_side.spawn(writer(
        store.clone(),
        results_rx,
        WriterContext {
            tally: tally.clone(),
            stored: stored.clone(),
            progress,
            requests: shared.requests.clone(),
            rate: shared.rate.clone(),
            limits: config
                .record_limits
                .map(|drain| LimitLog::new(drain, shared.rate.target())),
            stop_sending: shared.stop_sending.clone(),
            test_panic,
            resume: feeder.resume_handle(),
        },
    ));
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(worker(shared.clone(), queued.clone()));
    }
    let dispatcher = store_side.spawn(dispatch(Dispatch {
        store: store.clone(),
        run_id: run.id,
        shared: shared.clone(),
        tally: tally.clone(),
        stored,
        queue: feeder,
        batch,
        chain: chain_size(config.rate, workers),
    }));

    let ended = watch(
        Tasks {
            dispatcher,
            workers: tasks,
            writer: writer_task,
            queued,
        },
        &shared,
        config,
        shutdown,
    )
    .await;
    let sent = Sent::read(&shared);
    drop(shared);
    ended.finish().await?;
    if !sent.canary_rows.is_empty() {
        // Stored as failed before the canary tripped; they were not bad rows.
        store.requeue_rejected(run.id, &sent.canary_rows).await?;
    }
    let counts = store.counts(run.id).await?;
    let stored = lock(&tally).progress;
    Ok(report::finished(
        run,
        started,
        replayed,
        sent,
        stored,
        shutdown.graceful.is_cancelled(),
        counts,
    ))
}

/// The tasks of one drain.
struct Tasks {
    dispatcher: JoinHandle<Result<(), StoreError>>,
    workers: JoinSet<()>,
    writer: JoinHandle<Result<(), StoreError>>,
    /// The workers' queue, for the rows no worker took.
    queued: Taker,
}

/// How the watch ended: the first failure, and the writer when it is still running.
struct Ended {
    failure: Option<EngineError>,
    writer: Option<JoinHandle<Result<(), StoreError>>>,
}

impl Ended {
    /// Waits for the writer to store what is left (it ends once every sender is gone) and
    /// returns the drain's first failure.
    async fn finish(self) -> Result<(), EngineError> {
        let written = match self.writer {
            Some(writer) => joined("result writer", writer.await),
            None => Ok(()),
        };
        match self.failure {
            Some(failure) => Err(failure),
            None => written,
        }
    }
}

/// A store-side task's result, with a panic as its own error.
fn joined(
    task: &'static str,
    result: Result<Result<(), StoreError>, tokio::task::JoinError>,
) -> Result<(), EngineError> {
    match result {
        Ok(done) => Ok(done?),
        Err(source) => Err(EngineError::Task { task, source }),
    }
}

/// Watches every task until the dispatcher and the workers are done. A failure or panic in
/// any of them stops the sending and becomes the drain's error; after a stop, in-flight
/// requests get the stop deadline, and an abort ends them at once.
async fn watch(
    mut tasks: Tasks,
    shared: &Shared,
    config: &EngineConfig,
    shutdown: &Shutdown,
) -> Ended {
    let mut ended = Ended {
        failure: None,
        writer: None,
    };
    let fail = |failure: EngineError, ended: &mut Ended| {
        tracing::debug!("stopping the drain: {failure}");
        ended.failure.get_or_insert(failure);
        shared.stop_sending.cancel();
    };
    let mut dispatching = true;
    let mut writing = true;
    let mut aborted = false;
    let mut deadline = None;
    while dispatching || !tasks.workers.is_empty() {
        tokio::select! {
            done = &mut tasks.dispatcher, if dispatching => {
                dispatching = false;
                if let Err(failure) = joined("dispatcher", done) {
                    fail(failure, &mut ended);
                }
                if shutdown.graceful.is_cancelled() {
                    tracing::info!(
                        in_flight = shared.sending.load(std::sync::atomic::Ordering::Relaxed),
                        "stopping: no new requests; waiting for those in flight"
                    );
                }
                shared.stop_sending.cancel();
                deadline = Some(tokio::time::Instant::now() + config.stop_deadline);
            }
            Some(done) = tasks.workers.join_next(), if !tasks.workers.is_empty() => {
                if let Err(source) = done
                    && source.is_panic()
                {
                    fail(EngineError::Task { task: "worker", source }, &mut ended);
                }
            }
            done = &mut tasks.writer, if writing => {
                // The writer ends early only when it fails; it stopped the sending itself.
                writing = false;
                if let Err(failure) = joined("result writer", done) {
                    fail(failure, &mut ended);
                }
            }
            () = sleep_until(deadline), if deadline.is_some() && !aborted
                && shutdown.graceful.is_cancelled() => {
                tracing::warn!(
                    left = shared.sending.load(std::sync::atomic::Ordering::Relaxed),
                    "stop deadline passed; abandoning requests in flight"
                );
                aborted = true;
                tasks.workers.abort_all();
            }
            () = shutdown.abort.cancelled(), if !aborted => {
                aborted = true;
                tasks.workers.abort_all();
            }
        }
    }
    // Rows claimed but taken by no worker (they were aborted) go back untouched.
    for row in tasks.queued.take_all() {
        let _ = shared.results.send(unsent(&row).into());
    }
    if writing {
        ended.writer = Some(tasks.writer);
    }
    ended
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

//! The result writer: stores the workers' outcomes in batched transactions and counts them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::events::{Progress, Tally, TestPanic, lock};
use super::policy::RateControl;
use crate::store::{Next, Outcome, Store, StoreError};

/// Outcomes written per transaction, at most.
const WRITE_BATCH: usize = 2000;
/// How long the writer waits for more outcomes before it writes a batch.
const WRITE_LINGER: Duration = Duration::from_millis(10);

/// What the writer updates besides the table.
pub(super) struct WriterContext {
    pub tally: Arc<Mutex<Tally>>,
    /// Woken after every stored batch: finished rows may unblock later rows of their ticket.
    pub stored: Arc<Notify>,
    pub progress: watch::Sender<Progress>,
    pub requests: Arc<AtomicU64>,
    pub rate: Arc<RateControl>,
    /// Cancelled when the writer ends, however it ends: nothing may be sent whose outcome
    /// cannot be kept.
    pub stop_sending: CancellationToken,
    pub test_panic: TestPanic,
}

/// Stores outcomes in batches until every sender is gone.
pub(super) async fn writer(
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
        test_panic,
    } = cx;
    // Held for the writer's whole life, so a panic here stops the sending too; rows whose
    // outcomes are lost stay in flight and are replayed by the next runner.
    let _stop_on_exit = stop_sending.drop_guard();
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
        test_panic.fire_at(TestPanic::Writer);
        if let Err(error) = store.record_outcomes(&batch).await {
            // The rows stay in flight and are replayed by the next runner.
            tracing::error!("failed to store results, stopping: {error}");
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

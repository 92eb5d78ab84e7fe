//! The result writer: stores the workers' outcomes in batched transactions and counts them.
//!
//! It also keeps the record of the rate limit in force for the report: after a stored batch it
//! looks at the limit, and stores a change at most once a [`LIMIT_RECORD_EVERY`] (the latest
//! value, with the time it took effect), plus the last one when the drain ends. The workers
//! never wait on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::events::{Progress, Tally, TestPanic, lock};
use super::policy::RateControl;
use super::queue::{Chain, Resume, unsent};
use crate::store::{Next, Outcome, SessionId, Store, StoreError};

/// Outcomes written per transaction, at most.
const WRITE_BATCH: usize = 2000;
/// How long the writer waits for more outcomes before it writes a batch.
const WRITE_LINGER: Duration = Duration::from_millis(10);
/// Rate limit changes are stored at most this often per drain; changes in between are
/// coalesced into the latest.
pub(super) const LIMIT_RECORD_EVERY: Duration = Duration::from_secs(1);

/// Which rate limit changes to store: the drain's record of the limit in force.
#[derive(Debug)]
pub(super) struct LimitLog {
    drain: SessionId,
    /// The limit last stored (at first the configured rate, which the drain records itself).
    stored: Option<f64>,
    last_write: Option<Instant>,
}

impl LimitLog {
    /// A log for `drain`, which starts at `configured` (its recorded rate).
    pub fn new(drain: SessionId, configured: Option<f64>) -> Self {
        Self {
            drain,
            stored: configured,
            last_write: None,
        }
    }

    /// Whether the limit now, `current`, is to be stored at `now`: it differs from the one
    /// stored, and the last write is [`LIMIT_RECORD_EVERY`] old (unless the drain is
    /// `closing`). Counts it as stored when it says yes.
    fn take(&mut self, current: Option<f64>, now: Instant, closing: bool) -> bool {
        let recent = self
            .last_write
            .is_some_and(|t| now.duration_since(t) < LIMIT_RECORD_EVERY);
        if current == self.stored || (recent && !closing) {
            return false;
        }
        self.stored = current;
        self.last_write = Some(now);
        true
    }

    /// Stores the limit in force when [`LimitLog::take`] says so. A failure is logged, not
    /// fatal: the record is for the report, the outcomes are what matters.
    async fn note(&mut self, store: &Store, rate: &RateControl, closing: bool) {
        let (current, since) = rate.effective_since();
        if !self.take(current, Instant::now(), closing) {
            return;
        }
        if let Err(error) = store.record_rate_limit(self.drain, since, current).await {
            tracing::warn!("failed to record the rate limit for the report: {error}");
        }
    }
}

/// A row's outcome, and the rest of its chain: the rows that go out next, once this outcome
/// is stored (empty: none).
#[derive(Debug)]
pub(super) struct Done {
    pub outcome: Outcome,
    pub then: Chain,
}

impl From<Outcome> for Done {
    fn from(outcome: Outcome) -> Self {
        Done {
            outcome,
            then: Vec::new(),
        }
    }
}

/// What the writer updates besides the table.
pub(super) struct WriterContext {
    pub tally: Arc<Mutex<Tally>>,
    /// Woken after every stored batch: finished rows may unblock later rows of their ticket.
    pub stored: Arc<Notify>,
    pub progress: watch::Sender<Progress>,
    pub requests: Arc<AtomicU64>,
    pub rate: Arc<RateControl>,
    /// Where the limit's changes are stored (`None`: nowhere).
    pub limits: Option<LimitLog>,
    /// Cancelled when the writer ends, however it ends: nothing may be sent whose outcome
    /// cannot be kept.
    pub stop_sending: CancellationToken,
    pub test_panic: TestPanic,
    /// Where the rest of a chain is queued again once the row before it is stored.
    pub resume: Resume,
}

/// Stores outcomes in batches until every sender is gone.
pub(super) async fn writer(
    store: Store,
    mut results: mpsc::UnboundedReceiver<Done>,
    cx: WriterContext,
) -> Result<(), StoreError> {
    let WriterContext {
        tally,
        stored,
        progress,
        requests,
        rate,
        mut limits,
        stop_sending,
        test_panic,
        resume,
    } = cx;
    // Held for the writer's whole life, so a panic here stops the sending too; rows whose
    // outcomes are lost stay in flight and are replayed by the next runner.
    let _stop_on_exit = stop_sending.clone().drop_guard();
    let mut batch: Vec<Done> = Vec::with_capacity(WRITE_BATCH);
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(WRITE_BATCH);
    let mut chains: Vec<Chain> = Vec::new();
    while results.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        // A moment for more outcomes to arrive: a transaction per handful of rows cost the
        // SQLite thread more than the rows themselves.
        if batch.len() < WRITE_BATCH {
            tokio::time::sleep(WRITE_LINGER).await;
            while batch.len() < WRITE_BATCH {
                match results.try_recv() {
                    Ok(done) => batch.push(done),
                    Err(_) => break,
                }
            }
        }
        for done in batch.drain(..) {
            outcomes.push(done.outcome);
            if !done.then.is_empty() {
                chains.push(done.then);
            }
        }
        test_panic.fire_at(TestPanic::Writer);
        store_batch(&store, &outcomes, &tally, &requests, &rate, &progress).await?;
        outcomes.clear();
        // The rows behind those just stored may go now; once sending has stopped, or when no
        // worker is left to take them, they go back unsent.
        for chain in chains.drain(..) {
            let back = if stop_sending.is_cancelled() {
                Err(chain)
            } else {
                resume.push(chain)
            };
            if let Err(chain) = back {
                outcomes.extend(chain.iter().map(unsent));
            }
        }
        if !outcomes.is_empty() {
            store_batch(&store, &outcomes, &tally, &requests, &rate, &progress).await?;
            outcomes.clear();
        }
        stored.notify_one();
        if let Some(log) = &mut limits {
            log.note(&store, &rate, false).await;
        }
    }
    if let Some(log) = &mut limits {
        log.note(&store, &rate, true).await;
    }
    Ok(())
}

/// Stores one batch of outcomes and counts them.
async fn store_batch(
    store: &Store,
    batch: &[Outcome],
    tally: &Mutex<Tally>,
    requests: &AtomicU64,
    rate: &RateControl,
    progress: &watch::Sender<Progress>,
) -> Result<(), StoreError> {
    if let Err(error) = store.record_outcomes(batch).await {
        // The rows stay in flight and are replayed by the next runner.
        tracing::error!("failed to store results, stopping: {error}");
        return Err(error);
    }
    let snapshot = {
        let mut tally = lock(tally);
        for outcome in batch {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_changes_are_stored_at_most_once_a_second_and_the_last_at_the_end() {
        let mut log = LimitLog::new(SessionId::for_tests(1), Some(100.0));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(!log.take(Some(100.0), at(0), false), "the configured rate");
        assert!(log.take(Some(50.0), at(10), false), "the first change");
        assert!(!log.take(Some(45.0), at(500), false), "within the second");
        assert!(!log.take(Some(49.5), at(900), false));
        assert!(
            log.take(Some(49.5), at(1_010), false),
            "the latest, a second on"
        );
        assert!(!log.take(Some(49.5), at(5_000), false), "no change");
        assert!(log.take(Some(54.0), at(5_100), false));
        assert!(!log.take(Some(59.0), at(5_200), false));
        assert!(log.take(Some(59.0), at(5_300), true), "the drain ends");
        assert!(!log.take(Some(59.0), at(5_400), true));
        let mut unlimited = LimitLog::new(SessionId::for_tests(1), None);
        assert!(!unlimited.take(None, at(0), false));
        assert!(unlimited.take(Some(34.0), at(1), false), "429s set a limit");
    }
}

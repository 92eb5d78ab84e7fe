//! The result writer: stores the workers' outcomes in batched transactions and counts them.
//!
//! It also keeps the record of the rate limit in force for the report: after a stored batch it
//! looks at the limit, and stores a change at most once a [`LIMIT_RECORD_EVERY`] (the latest
//! value, with the time it took effect), plus the last one when the drain ends. The workers
//! never wait on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::events::{Progress, Tally, TestPanic, lock};
use super::policy::RateControl;
use super::queue::{Chain, Resume, unsent};
use crate::store::{Batch, Next, Outcome, SessionId, Step, Store, StoreError};

/// Outcomes written per transaction, at most.
const WRITE_BATCH: usize = 2000;
/// How long the writer waits for more outcomes before it writes a batch, at most.
const WRITE_LINGER: Duration = Duration::from_millis(10);
/// How often the writer looks at the workers' queue while it waits.
const LINGER_STEP: Duration = Duration::from_millis(1);
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

/// Journal entries a chain that has not ended may hold back from being dropped, at most: an
/// older one is folded into its row although its chain goes on (a request that hangs while
/// the others go on at full speed would otherwise keep every later entry in the table).
const STEPS_HELD_BACK: i64 = 16_384;

/// The writer's part of the journal of chain steps (see `store::steps`): which entries belong
/// to which chain still going.
#[derive(Debug)]
struct Journal {
    next_seq: i64,
    /// Chains going on, by the id of the row whose outcome comes next: their entries, as
    /// (`seq`, job id), oldest first.
    going: HashMap<i64, Vec<(i64, i64)>>,
    /// Entries below this `seq` were dropped.
    dropped_below: i64,
}

impl Journal {
    fn new(next_seq: i64) -> Self {
        Journal {
            next_seq,
            going: HashMap::new(),
            dropped_below: next_seq,
        }
    }

    /// Files one row's outcome: a success with rows of its chain behind it becomes a journal
    /// entry (returned) held for the chain; any other outcome ends its chain, whose entries go
    /// to `fold`.
    fn file(&mut self, done: &Done, fold: &mut Vec<(i64, i64)>) -> Option<i64> {
        let mut held = self.going.remove(&done.outcome.job_id).unwrap_or_default();
        match done.then.first() {
            Some(next) if matches!(done.outcome.next, Next::Succeeded { .. }) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                held.push((seq, done.outcome.job_id));
                self.going.insert(next.id, held);
                Some(seq)
            }
            _ => {
                fold.append(&mut held);
                None
            }
        }
    }

    /// Ends the chain that waited for `row` (it goes back unsent).
    fn end(&mut self, row: i64, fold: &mut Vec<(i64, i64)>) {
        if let Some(mut held) = self.going.remove(&row) {
            fold.append(&mut held);
        }
    }

    /// Folds the entries of chains that hold back more than [`STEPS_HELD_BACK`] entries, or of
    /// every chain when `all` (the drain is over), and returns the `seq` below which every
    /// entry is folded, when that moved since the last call.
    fn settle(&mut self, all: bool, fold: &mut Vec<(i64, i64)>) -> Option<i64> {
        let oldest_kept = self.next_seq - STEPS_HELD_BACK;
        let mut below = self.next_seq;
        self.going.retain(|_, held| {
            let first = held.first().map_or(i64::MAX, |&(seq, _)| seq);
            if all || first < oldest_kept {
                fold.append(held);
                // The chain goes on with no entry held, unless the drain is over.
                !all
            } else {
                below = below.min(first);
                true
            }
        });
        (below > self.dropped_below).then(|| {
            self.dropped_below = below;
            below
        })
    }
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
    let counting = Counting {
        tally: &tally,
        requests: &requests,
        rate: &rate,
        progress: &progress,
    };
    let mut journal = Journal::new(store.next_step_seq().await?);
    let mut batch: Vec<Done> = Vec::with_capacity(WRITE_BATCH);
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(WRITE_BATCH);
    let mut steps: Vec<Step> = Vec::new();
    let mut fold: Vec<(i64, i64)> = Vec::new();
    let mut chains: Vec<Chain> = Vec::new();
    while results.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        // A moment for more outcomes to arrive: a transaction per handful of rows cost the
        // SQLite thread more than the rows themselves. But not while the workers have nothing
        // queued: then they wait for what this batch releases (the rest of a ticket's chain
        // goes out only once the row before it is stored), and each moment here is one every
        // such ticket waits per row.
        let lingering = Instant::now();
        while linger(batch.len(), resume.queued(), lingering.elapsed()) {
            tokio::time::sleep(LINGER_STEP).await;
            while batch.len() < WRITE_BATCH {
                match results.try_recv() {
                    Ok(done) => batch.push(done),
                    Err(_) => break,
                }
            }
        }
        for done in batch.drain(..) {
            match journal.file(&done, &mut fold) {
                Some(seq) => steps.push(Step {
                    seq,
                    outcome: done.outcome,
                }),
                None => outcomes.push(done.outcome),
            }
            if !done.then.is_empty() {
                chains.push(done.then);
            }
        }
        let folded_below = journal.settle(false, &mut fold).unwrap_or(0);
        test_panic.fire_at(TestPanic::Writer);
        let written = Batch {
            outcomes: &outcomes,
            steps: &steps,
            fold: &fold,
            folded_below,
        };
        store_batch(&store, written, &counting).await?;
        outcomes.clear();
        steps.clear();
        fold.clear();
        // The rows behind those just stored may go now; once sending has stopped, or when no
        // worker is left to take them, they go back unsent and their chain ends.
        for chain in chains.drain(..) {
            let back = if stop_sending.is_cancelled() {
                Err(chain)
            } else {
                resume.push(chain)
            };
            if let Err(chain) = back {
                if let Some(first) = chain.first() {
                    journal.end(first.id, &mut fold);
                }
                outcomes.extend(chain.iter().map(unsent));
            }
        }
        if !outcomes.is_empty() {
            let written = Batch {
                outcomes: &outcomes,
                fold: &fold,
                ..Batch::default()
            };
            store_batch(&store, written, &counting).await?;
            outcomes.clear();
            fold.clear();
        }
        stored.notify_one();
        if let Some(log) = &mut limits {
            log.note(&store, &rate, false).await;
        }
    }
    // A chain whose next row never reported (its worker was aborted mid-request): the
    // successes before that row are stored, the row stays in flight.
    let folded_below = journal.settle(true, &mut fold).unwrap_or(0);
    if !fold.is_empty() || folded_below > 0 {
        let written = Batch {
            fold: &fold,
            folded_below,
            ..Batch::default()
        };
        store_batch(&store, written, &counting).await?;
    }
    if let Some(log) = &mut limits {
        log.note(&store, &rate, true).await;
    }
    Ok(())
}

/// Whether the writer waits a moment longer for outcomes before writing the `batch` rows it
/// has, `waited` after it began to: only while the batch is not full, the wait not over, and
/// the workers have `queued` chains to send meanwhile.
fn linger(batch: usize, queued: usize, waited: Duration) -> bool {
    batch < WRITE_BATCH && queued > 0 && waited < WRITE_LINGER
}

/// What a stored batch is counted in.
struct Counting<'a> {
    tally: &'a Mutex<Tally>,
    requests: &'a AtomicU64,
    rate: &'a RateControl,
    progress: &'a watch::Sender<Progress>,
}

/// Stores one batch and counts its outcomes and steps.
async fn store_batch(
    store: &Store,
    batch: Batch<'_>,
    counting: &Counting<'_>,
) -> Result<(), StoreError> {
    if let Err(error) = store.record(batch).await {
        // The rows stay in flight and are replayed by the next runner.
        tracing::error!("failed to store results, stopping: {error}");
        return Err(error);
    }
    let snapshot = {
        let mut tally = lock(counting.tally);
        let stepped = batch.steps.iter().map(|s| &s.outcome);
        for outcome in batch.outcomes.iter().chain(stepped) {
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
        let count = (batch.outcomes.len() + batch.steps.len()) as u64;
        tally.outstanding = tally.outstanding.saturating_sub(count);
        tally.progress.waiting = tally.waiting.len() as u64;
        tally.progress.requests = counting.requests.load(Ordering::Relaxed);
        tally.progress.rate_limit = counting.rate.effective();
        tally.progress
    };
    let _ = counting.progress.send(snapshot);
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

    fn claimed(id: i64) -> crate::store::Claimed {
        crate::store::Claimed {
            id,
            payload: String::new(),
            attempt: 1,
            follows: false,
        }
    }

    /// Row `id`'s outcome with the rows `then` of its chain behind it.
    fn done(id: i64, next: Next, then: &[i64]) -> Done {
        Done {
            outcome: Outcome {
                job_id: id,
                http_status: None,
                next,
                attempt: None,
            },
            then: then.iter().map(|&id| claimed(id)).collect(),
        }
    }

    fn ok() -> Next {
        Next::Succeeded { response: None }
    }

    #[test]
    fn the_writer_lingers_only_while_the_workers_have_chains_queued() {
        let moment = Duration::from_millis(3);
        assert!(linger(10, 5, moment));
        // Workers with nothing queued wait for what this batch releases: write it now.
        assert!(!linger(10, 0, moment));
        assert!(!linger(WRITE_BATCH, 5, moment));
        assert!(!linger(10, 5, WRITE_LINGER));
    }

    #[test]
    fn a_chains_successes_are_journaled_and_folded_when_it_ends() {
        let mut journal = Journal::new(10);
        let mut fold = Vec::new();
        assert_eq!(journal.file(&done(1, ok(), &[2, 3]), &mut fold), Some(10));
        assert_eq!(
            journal.file(&done(7, ok(), &[]), &mut fold),
            None,
            "no chain"
        );
        assert_eq!(journal.settle(false, &mut fold), None, "entry 10 is held");
        assert_eq!(journal.file(&done(2, ok(), &[3]), &mut fold), Some(11));
        assert!(fold.is_empty());
        assert_eq!(
            journal.file(&done(3, ok(), &[]), &mut fold),
            None,
            "the last row"
        );
        assert_eq!(fold, [(10, 1), (11, 2)]);
        assert_eq!(journal.settle(false, &mut fold), Some(12), "all folded");
        assert_eq!(journal.settle(false, &mut fold), None, "nothing new");
    }

    #[test]
    fn a_chain_ends_at_its_first_answer_that_is_not_a_success_or_when_sent_back() {
        let mut journal = Journal::new(1);
        let mut fold = Vec::new();
        journal.file(&done(1, ok(), &[2, 3]), &mut fold);
        journal.file(&done(5, ok(), &[6]), &mut fold);
        let retry = Next::Retry {
            at_ms: 9,
            class: "transient".into(),
            message: "HTTP 503".into(),
        };
        assert_eq!(journal.file(&done(2, retry, &[]), &mut fold), None);
        assert_eq!(fold, [(1, 1)], "row 1 is stored with row 2's retry");
        assert_eq!(
            journal.settle(false, &mut fold),
            Some(2),
            "entry 2 is row 5's"
        );
        journal.end(6, &mut fold);
        assert_eq!(fold, [(1, 1), (2, 5)], "row 6 went back unsent");
        assert_eq!(journal.settle(false, &mut fold), Some(3));
    }

    #[test]
    fn a_chain_that_stalls_is_folded_early_and_the_drains_end_folds_the_rest() {
        let mut journal = Journal::new(1);
        let mut fold = Vec::new();
        journal.file(&done(1, ok(), &[2]), &mut fold);
        for id in 0..STEPS_HELD_BACK {
            let row = 1_000 + 2 * id;
            journal.file(&done(row, ok(), &[row + 1]), &mut fold);
            journal.file(&done(row + 1, ok(), &[]), &mut fold);
        }
        fold.clear();
        // Row 2 hangs while the rest go on: its chain's entry is folded although it goes on.
        assert_eq!(journal.settle(false, &mut fold), Some(2 + STEPS_HELD_BACK));
        assert_eq!(fold, [(1, 1)]);
        fold.clear();
        journal.file(&done(2, ok(), &[3]), &mut fold);
        assert!(fold.is_empty(), "nothing left to fold at its next success");
        let last = journal.next_seq - 1;
        assert_eq!(
            journal.settle(true, &mut fold),
            Some(last + 1),
            "the drain ends"
        );
        assert_eq!(fold, [(last, 2)]);
        assert!(journal.going.is_empty());
    }
}

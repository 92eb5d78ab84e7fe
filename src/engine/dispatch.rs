//! The dispatcher: claims rows in id order and hands them to the workers until the run is done
//! or sending stops.
//!
//! Claimed rows wait in a [`super::queue`] that `concurrency` workers take from, in chains of
//! a ticket's consecutive rows; the dispatcher claims a batch at a time, when the queue runs
//! low.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::events::{Tally, lock};
use super::queue::Feeder;
use super::worker::Shared;
use crate::store::{Cursor, Store, StoreError, now_ms};

/// Chains claimed per store round trip, at most.
const CLAIM_BATCH: usize = 512;
/// Rows of one ticket claimed together and sent one after another by one worker, at most: a
/// ticket's history goes out without a commit and a claim between its rows, while a failure
/// returns at most this many rows unsent.
pub(super) const CHAIN: usize = 32;
/// Longest the dispatcher sleeps before looking at the table again.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The chains claimed but not yet sent at most, for `workers` workers: a whole batch per round
/// trip, since claiming one row per free worker would cost three statements a row; claimed
/// rows wait in the queue at most a few requests long (most chains are one row).
pub(super) fn batch_size(workers: usize) -> usize {
    (workers * 8).clamp(1, CLAIM_BATCH)
}

/// The longest chain for a drain at `rate` requests/s (0: no limit) with `workers` workers.
/// Chains save the commit and the claim between a ticket's rows, which matters only when the
/// drain is fast; a chain's rows are claimed before they are sent, so at a rate limit a chain
/// holds no more than a second of one worker's requests, and the rows claimed ahead (a batch
/// of chains) stay within about [`batch_size`] / `workers` seconds of sending. At Kapture's
/// pace (5/s, 4 workers) there are no chains.
pub(super) fn chain_size(rate: f64, workers: usize) -> usize {
    if rate <= 0.0 {
        return CHAIN;
    }
    ((rate / workers.max(1) as f64) as usize).clamp(1, CHAIN)
}

/// What the dispatcher owns: it runs on the store's thread.
pub(super) struct Dispatch {
    pub store: Store,
    pub run_id: i64,
    pub shared: Arc<Shared>,
    pub tally: Arc<Mutex<Tally>>,
    /// Woken by the writer after every stored batch.
    pub stored: Arc<Notify>,
    /// The workers' queue; dropping it, once the dispatcher is done, ends them.
    pub queue: Feeder,
    /// Chains claimed but not yet sent, at most.
    pub batch: usize,
    /// Rows per chain, at most ([`chain_size`]).
    pub chain: usize,
}

/// Keeps the workers supplied with claimed rows until the run is done or sending stops.
pub(super) async fn dispatch(
    Dispatch {
        store,
        run_id,
        shared,
        tally,
        stored,
        queue,
        batch,
        chain,
    }: Dispatch,
) -> Result<(), StoreError> {
    let mut cursor = Cursor::default();
    loop {
        if shared.stop_sending.is_cancelled() {
            return Ok(());
        }
        let queued = queue.len();
        if queued >= queue.low_water() {
            tokio::select! {
                () = shared.stop_sending.cancelled() => return Ok(()),
                () = queue.low() => {}
            }
            continue;
        }
        let limit = (batch - queued) as i64;
        let claimed = store
            .claim(run_id, &mut cursor, limit, chain, now_ms())
            .await?;
        if !claimed.is_empty() {
            {
                let mut t = lock(&tally);
                t.outstanding += claimed.len() as u64;
                for row in &claimed {
                    t.waiting.remove(&row.id);
                }
            }
            queue.push(claimed);
            continue;
        }
        if !cursor.exhausted {
            // The claim's bounded walk passed only parked rows: go on from where it stopped.
            continue;
        }
        // Nothing claimable now: finished, or waiting for retries or for earlier rows.
        let outstanding = lock(&tally).outstanding;
        let (any_waiting, next_due) = store.waiting(run_id, now_ms()).await?;
        if outstanding == 0 && cursor.exhausted && !any_waiting {
            return Ok(());
        }
        let wait = match next_due {
            Some(due) if outstanding == 0 => {
                Duration::from_millis((due - now_ms()).clamp(1, 60_000) as u64)
            }
            _ => IDLE_POLL,
        };
        tokio::select! {
            () = shared.stop_sending.cancelled() => return Ok(()),
            () = stored.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_as_long_as_a_second_of_a_workers_requests_at_a_rate_limit() {
        assert_eq!(chain_size(0.0, 64), CHAIN, "no limit");
        assert_eq!(chain_size(5.0, 4), 1, "Kapture's pace: no chains");
        assert_eq!(chain_size(0.5, 1), 1);
        assert_eq!(chain_size(100.0, 8), 12);
        assert_eq!(chain_size(10_000.0, 8), CHAIN);
    }
}

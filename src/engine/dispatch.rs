//! The dispatcher: claims rows in id order and hands them to the workers until the run is done
//! or sending stops.
//!
//! Claimed rows wait for a worker in a bounded flume channel (flume came with sqlx; several
//! workers take from one receiver). The channel holds half a claim batch and the dispatcher
//! pushes the next half while the workers empty it, so at most one batch of rows is claimed
//! but not yet sent, and the next claim runs while half a batch is still queued.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::events::{Tally, lock};
use super::worker::{Shared, unsent};
use crate::store::{Claimed, Cursor, Store, StoreError, now_ms};

/// Rows claimed per store round trip, at most.
const CLAIM_BATCH: usize = 512;
/// Longest the dispatcher sleeps before looking at the table again.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The rows one claim takes and the channel to the workers holds, for `workers` workers: a
/// claim per free worker would cost three statements a row, and a claimed row waits at most
/// a few requests long.
pub(super) fn queue_size(workers: usize) -> usize {
    ((workers * 8).clamp(1, CLAIM_BATCH) / 2).max(1)
}

/// What the dispatcher owns: it runs on the store's thread.
pub(super) struct Dispatch {
    pub store: Store,
    pub run_id: i64,
    pub shared: Arc<Shared>,
    pub tally: Arc<Mutex<Tally>>,
    /// Woken by the writer after every stored batch.
    pub stored: Arc<Notify>,
    /// The workers' side of the channel; closing it (dropping this) ends them.
    pub rows: flume::Sender<Claimed>,
    /// Rows one claim takes at most.
    pub claim: usize,
}

/// Keeps the workers supplied with claimed rows until the run is done or sending stops.
pub(super) async fn dispatch(
    Dispatch {
        store,
        run_id,
        shared,
        tally,
        stored,
        rows,
        claim,
    }: Dispatch,
) -> Result<(), StoreError> {
    let mut cursor = Cursor::default();
    loop {
        if shared.stop_sending.is_cancelled() {
            return Ok(());
        }
        let claimed = store
            .claim(run_id, &mut cursor, claim as i64, now_ms())
            .await?;
        if !claimed.is_empty() {
            {
                let mut t = lock(&tally);
                t.outstanding += claimed.len() as u64;
                for row in &claimed {
                    t.waiting.remove(&row.id);
                }
            }
            // Waits while the channel is full. Once sending stops, the workers put every row
            // they take back unsent (and with no worker left, the drain does), so this never
            // waits long.
            for row in claimed {
                if let Err(flume::SendError(row)) = rows.send_async(row).await {
                    let _ = shared.results.send(unsent(&row));
                }
            }
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

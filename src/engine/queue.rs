//! The claimed rows waiting for a worker, in chains: a flume channel, and a signal when it
//! runs low.
//!
//! flume came with sqlx; unlike tokio's mpsc, several workers can take from one receiver. The
//! dispatcher tops the channel up with a whole claim at a time when it falls below its low
//! water mark, so it is woken once per claim, not once per row (a wake-up of the store's
//! thread costs about as much as a request).

use std::sync::Arc;

use tokio::sync::Notify;

use crate::store::{Claimed, Next, Outcome};

/// The low water mark and its signal.
#[derive(Debug)]
struct LowWater {
    mark: usize,
    low: Notify,
}

/// Rows of one ticket claimed together, in id order, for one worker to send one after another
/// (most chains are one row).
pub(super) type Chain = Vec<Claimed>;

/// Opens a queue whose dispatcher claims more below `low_water` chains.
pub(super) fn queue(low_water: usize) -> (Feeder, Taker) {
    let (rows, taken) = flume::unbounded();
    let signal = Arc::new(LowWater {
        mark: low_water,
        low: Notify::new(),
    });
    (
        Feeder {
            rows,
            signal: signal.clone(),
        },
        Taker {
            rows: taken,
            signal,
        },
    )
}

/// The dispatcher's end.
#[derive(Debug)]
pub(super) struct Feeder {
    rows: flume::Sender<Chain>,
    signal: Arc<LowWater>,
}

impl Feeder {
    /// Chains waiting for a worker.
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(super) fn low_water(&self) -> usize {
        self.signal.mark
    }

    /// Queues claimed rows, a chain per entry ([`Claimed::follows`] joins a row to the one
    /// before it). Never waits: the queue is unbounded, and the dispatcher claims only what
    /// brings it back to its batch size.
    pub(super) fn push(&self, rows: Vec<Claimed>) {
        // The drain holds a receiver until the dispatcher is done: sending cannot fail.
        let mut chain: Chain = Vec::new();
        for row in rows {
            if !row.follows && !chain.is_empty() {
                let _ = self.rows.send(std::mem::take(&mut chain));
            }
            chain.push(row);
        }
        if !chain.is_empty() {
            let _ = self.rows.send(chain);
        }
    }

    /// A handle that puts chains back without keeping the queue open: once the dispatcher
    /// is done, the workers end as before.
    pub(super) fn resume_handle(&self) -> Resume {
        Resume(self.rows.downgrade())
    }

    /// Waits until a worker leaves the queue below its low water mark.
    pub(super) async fn low(&self) {
        self.signal.low.notified().await;
    }
}

/// Where the writer puts the rest of a chain once the row before it is stored.
#[derive(Debug, Clone)]
pub(super) struct Resume(flume::WeakSender<Chain>);

impl Resume {
    /// Chains waiting for a worker (0 once the dispatcher is done).
    pub(super) fn queued(&self) -> usize {
        self.0.upgrade().map_or(0, |rows| rows.len())
    }

    /// Queues `chain`; gives it back when the dispatcher is done (no worker will take it).
    pub(super) fn push(&self, chain: Chain) -> Result<(), Chain> {
        match self.0.upgrade() {
            Some(rows) => rows.send(chain).map_err(|e| e.into_inner()),
            None => Err(chain),
        }
    }
}

/// A worker's end; the drain keeps one too, for the rows no worker took.
#[derive(Debug, Clone)]
pub(super) struct Taker {
    rows: flume::Receiver<Chain>,
    signal: Arc<LowWater>,
}

impl Taker {
    /// The next chain, or None once the dispatcher is done and the queue is empty.
    pub(super) async fn next(&self) -> Option<Chain> {
        let row = self.rows.recv_async().await.ok()?;
        if self.rows.len() < self.signal.mark {
            self.signal.low.notify_one();
        }
        Some(row)
    }

    /// Takes every row still queued.
    pub(super) fn take_all(&self) -> Vec<Claimed> {
        self.rows.drain().flatten().collect()
    }
}

/// A claimed row that is put back without being sent.
pub(super) fn unsent(row: &Claimed) -> Outcome {
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

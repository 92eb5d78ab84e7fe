//! The simulator's books: one ledger entry per Update Ticket request and counts per outcome.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One Update Ticket request as the simulator saw and answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Arrival order of Update Ticket requests, from 1.
    pub seq: u64,
    /// Milliseconds since the simulator started, when the answer was decided.
    pub at_ms: u64,
    /// The update's `ticket_id`, when the body had one.
    pub ticket_id: Option<String>,
    /// [`super::digest`] of the update object (of the raw body when it was not JSON).
    pub digest: String,
    /// The update's `comment`, when it had one.
    pub comment: Option<String>,
    /// What was returned: `success`, `rejected`, `auth`, `throttled`, `fail_5xx`, `drop`, or
    /// `hang` for a hanging request cut short by shutdown (a hang that ran its course is
    /// answered and recorded as usual).
    pub outcome: String,
    /// The HTTP status returned; `None` when the connection was closed without one.
    pub http_status: Option<u16>,
}

/// Counts since the simulator started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Update Ticket requests received.
    pub requests: u64,
    /// Updates applied.
    pub succeeded: u64,
    /// Updates refused with `"status":"failed"` (bad body, ticket_id, sub_status, ...).
    pub rejected: u64,
    /// Requests answered as unauthorised (bad or missing token, `--auth-fail-after`).
    pub auth: u64,
    /// Requests answered 429.
    pub throttled: u64,
    /// Requests answered 500/502/503.
    pub fail_5xx: u64,
    /// Requests that hung (whatever they were answered in the end).
    pub hung: u64,
    /// Connections closed without an answer.
    pub dropped: u64,
    /// Get Ticket requests received.
    pub reads: u64,
    /// Tickets held in memory.
    pub tickets: u64,
}

/// How an Update Ticket request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Rejected,
    Auth,
    Throttled,
    Fail5xx,
    Hang,
    Drop,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Rejected => "rejected",
            Outcome::Auth => "auth",
            Outcome::Throttled => "throttled",
            Outcome::Fail5xx => "fail_5xx",
            Outcome::Hang => "hang",
            Outcome::Drop => "drop",
        }
    }
}

/// Ledger and counters, shared by every connection. Counters are atomics; the ledger's lock
/// is held only for a push or a copy.
#[derive(Debug)]
pub(crate) struct Books {
    started: Instant,
    ledger: Mutex<Vec<LedgerEntry>>,
    pub requests: AtomicU64,
    pub reads: AtomicU64,
    pub hung: AtomicU64,
    succeeded: AtomicU64,
    rejected: AtomicU64,
    auth: AtomicU64,
    throttled: AtomicU64,
    fail_5xx: AtomicU64,
    dropped: AtomicU64,
}

/// What the ledger records of a request's body.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub seq: u64,
    pub ticket_id: Option<String>,
    pub digest: String,
    pub comment: Option<String>,
}

impl Books {
    pub fn new() -> Books {
        Books {
            started: Instant::now(),
            ledger: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            hung: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            auth: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            fail_5xx: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Time since start, for rate windows and the ledger.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Counts an answer to an Update Ticket request and appends it to the ledger.
    pub fn record(&self, seen: Seen, outcome: Outcome, http_status: Option<u16>) {
        let counter = match outcome {
            Outcome::Success => &self.succeeded,
            Outcome::Rejected => &self.rejected,
            Outcome::Auth => &self.auth,
            Outcome::Throttled => &self.throttled,
            Outcome::Fail5xx => &self.fail_5xx,
            Outcome::Drop => &self.dropped,
            Outcome::Hang => &self.hung,
        };
        if outcome != Outcome::Hang {
            counter.fetch_add(1, Relaxed);
        }
        let entry = LedgerEntry {
            seq: seen.seq,
            at_ms: self.started.elapsed().as_millis() as u64,
            ticket_id: seen.ticket_id,
            digest: seen.digest,
            comment: seen.comment,
            outcome: outcome.as_str().to_owned(),
            http_status,
        };
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(entry);
    }

    /// Counts a Get Ticket answered as unauthorised (reads are not in the ledger).
    pub fn count_auth(&self) {
        self.auth.fetch_add(1, Relaxed);
    }

    /// A copy of the ledger, in the order answers were decided.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The counts; `tickets` is filled in by the caller.
    pub fn stats(&self, tickets: u64) -> SimStats {
        SimStats {
            requests: self.requests.load(Relaxed),
            succeeded: self.succeeded.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            auth: self.auth.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            fail_5xx: self.fail_5xx.load(Relaxed),
            hung: self.hung.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            reads: self.reads.load(Relaxed),
            tickets,
        }
    }
}

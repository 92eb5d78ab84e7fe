//! Assembling a drain's report from the counts its tasks kept.

use std::time::Instant;

use super::events::{DrainReport, Progress, lock};
use super::worker::Shared;
use crate::store::{Counts, Run};

/// Errors listed in a report.
const TOP_ERRORS: usize = 5;

/// The report of a run with nothing to send: `counts` are the ones just read.
pub(super) fn nothing_to_send(
    run: &Run,
    started: Instant,
    replayed: u64,
    counts: Counts,
) -> DrainReport {
    DrainReport {
        run: run.name.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        requests: 0,
        succeeded: 0,
        failed: 0,
        replayed,
        throttle_events: 0,
        throttled: 0,
        halt: None,
        stopped: false,
        counts,
        top_errors: Vec::new(),
    }
}

/// What the workers counted, read once they are done.
pub(super) struct Sent {
    requests: u64,
    throttle_events: u64,
    throttled: u64,
    halt: Option<super::Halt>,
    top_errors: Vec<super::ErrorCount>,
    /// Rows a canary halt failed before it tripped, to put back to pending.
    pub(super) canary_rows: Vec<i64>,
}

impl Sent {
    pub(super) fn read(shared: &Shared) -> Sent {
        Sent {
            requests: shared.requests.load(std::sync::atomic::Ordering::Relaxed),
            throttle_events: shared.rate.throttle_events(),
            throttled: shared.rate.throttled_answers(),
            halt: lock(&shared.halt).clone(),
            top_errors: lock(&shared.errors).top(TOP_ERRORS),
            canary_rows: std::mem::take(&mut *lock(&shared.canary_rows)),
        }
    }
}

/// The report of a drain that ran.
pub(super) fn finished(
    run: &Run,
    started: Instant,
    replayed: u64,
    sent: Sent,
    stored: Progress,
    stopped: bool,
    counts: Counts,
) -> DrainReport {
    DrainReport {
        run: run.name.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        requests: sent.requests,
        succeeded: stored.succeeded,
        failed: stored.failed,
        replayed,
        throttle_events: sent.throttle_events,
        throttled: sent.throttled,
        halt: sent.halt,
        stopped,
        counts,
        top_errors: sent.top_errors,
    }
}

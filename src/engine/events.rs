//! What the drain's pieces share: its knobs, stop signals, halts, progress, counts and report.
//!
//! A leaf: every other file of the engine imports it, and it imports none of them.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::policy::RetryPolicy;
use crate::store::{Counts, SessionId, StoreError};

/// Most distinct errors tracked for the summary.
const ERROR_KINDS: usize = 100;
/// Characters of an error message kept for the summary.
const ERROR_CHARS: usize = 160;

/// How the engine runs: the knobs, as resolved settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Requests per second (decimals allowed); 0 means no limit.
    pub rate: f64,
    pub burst: u32,
    /// Attempts per row before it is failed.
    pub max_attempts: u32,
    pub retry: RetryPolicy,
    /// Longest pause a 429 can impose.
    pub throttle_cap: Duration,
    /// How long in-flight requests may take to finish after a stop.
    pub stop_deadline: Duration,
    /// How long Kapture may be unreachable before the run halts (exit 6).
    pub unreachable_timeout: Duration,
    /// Answers the canary watches (the first N, and the last N); 0 turns it off.
    pub canary: u32,
    /// How a kapsync command line starts for this database (`kapsync --db PATH ...`, with the
    /// `--db`, `--config` and `--profile` that are not the defaults), so the commands the
    /// engine's messages suggest work when pasted. The command layer knows; the engine does
    /// not read settings.
    pub hint_prefix: String,
    /// The recorded drain ([`crate::store::Store::drain_started`]) to store the rate limit's
    /// changes against, for the report; `None` stores none.
    pub record_limits: Option<SessionId>,
}

/// Stop signals, owned by the caller so tests can trigger them: `graceful` stops claiming and
/// lets in-flight requests finish; `abort` stops at once.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    pub graceful: CancellationToken,
    pub abort: CancellationToken,
}

/// Why a run halted before its work was done. Every halt stops the sending; the rows it
/// concerns go back to `pending`, and the command maps each kind to its exit code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Halt {
    /// Kapture refused the key (invalid or expired).
    Auth { message: String },
    /// Kapture refused permission.
    Forbidden { message: String },
    /// Every answer is 404/405: the subdomain or base URL is wrong.
    Config { http_status: u16, message: String },
    /// The first answers show the target is not Kapture: its host does not resolve, it
    /// answers 501, or pages that are not Kapture's JSON.
    WrongTarget { sign: String, message: String },
    /// The canary: the first (or the last) answers were all rejections, most with one message.
    Canary { rows: u32, message: String },
    /// Nothing got through to Kapture for the whole `--unreachable-timeout`.
    Unreachable { waited_secs: u64, message: String },
}

impl Halt {
    /// The command the halt's advice leaves to the user, pasteable: `prefix` starts a kapsync
    /// command line for this database (see [`EngineConfig::hint_prefix`]), `run` is the
    /// halted run. Only a configuration halt has one: rows it failed one by one before it
    /// tripped are retried once the target is fixed.
    pub fn next_step(&self, prefix: &str, run: &str) -> Option<String> {
        match self {
            Halt::Config { .. } => Some(format!(
                "rows failed before the halt: {prefix} retry --run {} --class rejected",
                crate::quote::shell_word(run)
            )),
            _ => None,
        }
    }

    /// Whether the halt is the user's to fix in the settings or the mapping (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Halt::Config { .. } | Halt::WrongTarget { .. } | Halt::Canary { .. }
        )
    }
}

/// The mapping's part a canary message most likely points at.
fn likely_cause(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    for field in [
        "sub_status",
        "callback_time",
        "disposition",
        "queue",
        "ticket_id",
    ] {
        if lower.contains(field) || lower.contains(&field.replace('_', " ")) {
            return format!(
                "how the mapping fills {field} (a value in its [values.{field}] table, its \
                 column or its default)"
            );
        }
    }
    "a value the mapping file sends to every row ([values.*], [defaults] or a column mapped \
     to the wrong field)"
        .to_owned()
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
                 pending again"
            ),
            Halt::WrongTarget { sign, message } => write!(
                f,
                "the first requests got {sign} ({message}): this is not Kapture's Update Ticket \
                 API, so the subdomain or --base-url is probably wrong. Fix it and run again; \
                 no row was failed and the affected rows are pending again"
            ),
            Halt::Canary { rows, message } => write!(
                f,
                "Kapture rejected {rows} rows in a row, with the same message: \"{message}\". \
                 That is a systematic error, not {rows} bad rows: most likely {}. Fix it, \
                 ingest again, and run again; those rows are pending again, not failed \
                 (--canary 0 turns this check off)",
                likely_cause(message)
            ),
            Halt::Unreachable {
                waited_secs,
                message,
            } => write!(
                f,
                "Kapture could not be reached for {} ({message}). No row was failed and \
                 nothing more was sent; run the same command again to resume (or raise \
                 --unreachable-timeout)",
                humantime::format_duration(Duration::from_secs(*waited_secs))
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
    /// Times the run slowed down because the share of 429 answers was high.
    pub throttle_events: u64,
    /// Answers that were 429.
    pub throttled: u64,
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
    /// One of the drain's tasks panicked (or was cancelled under it): the drain ended, and rows
    /// it had claimed are replayed by the next run.
    #[error("the {task} stopped unexpectedly; run again to resume (claimed rows are replayed)")]
    Task {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Locks a mutex, taking the data of one a panicking holder left behind.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The errors seen, by class and (shortened) message, for the summary.
#[derive(Debug, Default)]
pub(super) struct ErrorTally {
    counts: HashMap<(String, String), u64>,
}

impl ErrorTally {
    /// Shortens a message to what the tally keys on.
    pub(super) fn short(message: &str) -> String {
        message.chars().take(ERROR_CHARS).collect()
    }

    /// Counts one error; `short` comes from [`ErrorTally::short`].
    pub(super) fn note(&mut self, class: &str, short: String) {
        let key = (class.to_owned(), short);
        if let Some(n) = self.counts.get_mut(&key) {
            *n += 1;
        } else if self.counts.len() < ERROR_KINDS {
            self.counts.insert(key, 1);
        }
    }

    /// The `n` most frequent errors, most frequent first.
    pub(super) fn top(&self, n: usize) -> Vec<ErrorCount> {
        let mut top: Vec<ErrorCount> = self
            .counts
            .iter()
            .map(|((class, message), count)| ErrorCount {
                class: class.clone(),
                message: message.clone(),
                count: *count,
            })
            .collect();
        top.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.message.cmp(&b.message))
        });
        top.truncate(n);
        top
    }
}

/// Bookkeeping the writer keeps and the dispatcher reads.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub progress: Progress,
    /// Rows claimed whose outcome is not stored yet.
    pub outstanding: u64,
    /// Rows scheduled to be sent again, by id.
    pub waiting: HashSet<i64>,
}

/// A panic the integration tests inject through the real binary
/// (`KAPSYNC_TEST_PANIC=worker|writer`), read once per drain. Debug builds only: a release
/// build never reads the variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TestPanic {
    None,
    /// A worker panics once it has a reply for its first row (the row stays in flight).
    Worker,
    /// The writer panics before storing its first batch.
    Writer,
}

impl TestPanic {
    pub(super) fn from_env() -> TestPanic {
        #[cfg(debug_assertions)]
        match std::env::var("KAPSYNC_TEST_PANIC").as_deref() {
            Ok("worker") => return TestPanic::Worker,
            Ok("writer") => return TestPanic::Writer,
            _ => {}
        }
        TestPanic::None
    }

    /// Panics when this is the place the test asked for.
    #[inline]
    pub(super) fn fire_at(self, here: TestPanic) {
        #[cfg(debug_assertions)]
        if self == here && here != TestPanic::None {
            panic!("KAPSYNC_TEST_PANIC: the {here:?} panics, as asked");
        }
        #[cfg(not(debug_assertions))]
        let _ = (self, here);
    }
}

//! The drain engine: dispatcher, workers, rate limiting, retry schedule and shutdown.
//!
//! The engine knows nothing of terminals: it reports progress on a watch channel and returns
//! a [`DrainReport`]; `report/` draws and prints.
//!
//! Where things are: the drain's set-up and every way it ends in `drain.rs`; what an answer
//! means for its row, the rate and the run in `decide.rs` (pure, table-tested) and where that
//! is applied in `worker.rs`; claiming in `dispatch.rs`; storing results in `writer.rs`; the
//! rate limit, the 429 pause and the retry schedule in `policy.rs`; the shared types (config,
//! halts, progress, report, errors) in `events.rs`.

mod canary;
mod decide;
mod dispatch;
mod drain;
mod events;
mod lock;
mod policy;
mod queue;
mod reach;
mod report;
mod store_thread;
mod worker;
mod writer;

pub use drain::drain;
pub use events::{DrainReport, EngineConfig, EngineError, ErrorCount, Halt, Progress, Shutdown};
pub use lock::{LockError, RunnerLock};

/// Requests per second when `--rate` is not given: public Kapture clients pace themselves at
/// 3 to 6.
pub const DEFAULT_RATE: f64 = 5.0;
/// Above this rate to a target that is not loopback, a run warns once: public Kapture
/// clients pace themselves at 3 to 6 requests a second.
pub const RATE_WARNING_ABOVE: f64 = 20.0;
/// How long Kapture may be unreachable before a run stops with exit code 6.
pub const DEFAULT_UNREACHABLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// Answers the canary looks at: the first N (and the last N) all rejected with one message
/// stop the run.
pub const DEFAULT_CANARY: u32 = 20;
/// Requests allowed at once above the rate.
pub const DEFAULT_BURST: u32 = 1;
/// Requests in flight at most.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// Attempts per row before it is failed.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
pub use policy::{QUIET_PERIOD, RETRY_BASE, RETRY_CAP, RateControl, RetryPolicy, THROTTLE_CAP};
pub use store_thread::StoreThread;

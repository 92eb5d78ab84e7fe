//! The drain engine: dispatcher, workers, rate limiting, retry schedule and shutdown.
//!
//! The engine knows nothing of terminals: it reports progress on a watch channel and returns
//! a [`DrainReport`]; `report/` draws and prints.

mod drain;
mod lock;
mod policy;

pub use drain::{
    DrainReport, EngineConfig, EngineError, ErrorCount, Halt, Progress, Shutdown, drain,
};
pub use lock::{LockError, RunnerLock};

/// Requests per second when `--rate` is not given: public Kapture clients pace themselves at
/// 3 to 6.
pub const DEFAULT_RATE: u32 = 5;
/// Requests allowed at once above the rate.
pub const DEFAULT_BURST: u32 = 1;
/// Requests in flight at most.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// Attempts per row before it is failed.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
pub use policy::{QUIET_PERIOD, RETRY_BASE, RETRY_CAP, RateControl, RetryPolicy, THROTTLE_CAP};

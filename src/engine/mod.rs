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
pub use policy::{QUIET_PERIOD, RETRY_BASE, RETRY_CAP, RateControl, RetryPolicy, THROTTLE_CAP};

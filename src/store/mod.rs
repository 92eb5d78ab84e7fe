//! The SQLite job table: every SQL statement of kapsync lives in this module.

mod claim;
mod delta;
pub mod files;
#[cfg(test)]
mod fixtures;
mod history;
mod ingest;
mod limits;
mod open;
mod problems;
mod reports;
mod results;
mod retry;
mod runs;
mod series;
mod settings;
mod statements;
mod steps;
mod target;

pub use claim::{Claimed, Cursor};
pub use delta::{DeltaCounts, DeltaOptions};
pub use history::Failures;
pub use ingest::{IngestWriter, NewJob, SourceProgress, SourceStart};
pub use limits::LimitChange;
pub use open::Store;
pub use problems::{EXAMPLES_PER_GROUP, Example, GrepMatch, MessageGroup};
pub use reports::{Activity, AttemptError, Counts, JobRow, RunSummary, SourceSummary};
pub use results::{AttemptRecord, Batch, Next, Outcome, Step};
pub use retry::{ERROR_CLASSES, Requeued, RowFilter};
pub use runs::Run;
pub use series::{Buckets, CLASSES, latency_bin};
pub use settings::{DrainSession, DrainSettings, MappingUse, RunSet, SessionId};
pub use target::TargetBinding;

/// Database file used when neither `--db`, `KAPSYNC_DB` nor kapsync.toml names one.
pub const DEFAULT_DB: &str = "kapsync.db";

/// A database operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be created or opened.
    #[error("failed to open database {path}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: sqlx::Error,
    },
    /// The database file could not be created with owner-only permissions.
    #[error("failed to create database file {path}")]
    Create {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database, its WAL or shared-memory file is a link or not this user's alone.
    #[error(transparent)]
    File(#[from] files::FileError),
    /// The embedded migrations could not be applied.
    #[error("failed to apply database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("failed to query the database")]
    Query(#[from] sqlx::Error),
    /// A named run does not exist.
    #[error("no run named {0:?} (see `kapsync runs`)")]
    NoSuchRun(String),
    /// The database holds no runs yet.
    #[error("the database has no runs yet: ingest a file first (`kapsync ingest FILE`)")]
    NoRuns,
}

impl StoreError {
    /// Whether the user can fix this by changing the command (exit code 2): a run name that
    /// does not exist, a database with no runs, or a database file kapsync refuses.
    pub fn is_usage(&self) -> bool {
        match self {
            StoreError::File(e) => e.is_usage(),
            other => matches!(other, StoreError::NoSuchRun(_) | StoreError::NoRuns),
        }
    }
}

/// Milliseconds since the Unix epoch, the time unit of every integer timestamp in the store.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The current time as RFC 3339 text, for timestamps people read.
pub fn now_text() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The row states. `as_str` is the value stored in `jobs.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Pending,
    InFlight,
    Succeeded,
    Failed,
    Invalid,
    Skipped,
}

impl JobState {
    /// Every state, in the order reports list them.
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::InFlight,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Invalid,
        JobState::Skipped,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::InFlight => "in_flight",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Invalid => "invalid",
            JobState::Skipped => "skipped",
        }
    }

    /// Parses a stored or user-given name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

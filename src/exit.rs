//! Process exit codes: a documented contract, listed in the README and in `--help`.

/// All rows done and succeeded, or nothing to do.
pub const OK: u8 = 0;
/// Finished, but some rows failed or were invalid.
pub const ROWS_FAILED: u8 = 1;
/// Usage or configuration error: nothing was changed. This includes a wrong target (answers
/// 404/405/501, a host that does not resolve) and a canary that every row fails.
pub const USAGE: u8 = 2;
/// Halted: the API key is invalid, expired or lacks permission. Re-running resumes.
pub const AUTH_HALT: u8 = 3;
/// Stopped early (Ctrl-C, SIGTERM, time window) with work left. Re-running resumes.
pub const STOPPED: u8 = 4;
/// Internal error: database, I/O.
pub const INTERNAL: u8 = 5;
/// Kapture could not be reached for `--unreachable-timeout`: nothing was sent and no row was
/// failed. Re-running resumes.
pub const UNREACHABLE: u8 = 6;

/// An error that is the user's to fix (a bad flag combination, a path): exit 2.
///
/// For messages the command layer composes itself. Library errors need no wrapping: each says
/// whether it is a usage error (`is_usage()`), and `commands::exit_code` asks it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

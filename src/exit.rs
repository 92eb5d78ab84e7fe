//! Process exit codes: a documented contract, listed in the README and in `--help`.

/// All rows done and succeeded, or nothing to do.
pub const OK: u8 = 0;
/// Finished, but some rows failed or were invalid.
pub const ROWS_FAILED: u8 = 1;
/// Usage or configuration error: nothing was changed.
pub const USAGE: u8 = 2;
/// Halted: the API key is invalid, expired or lacks permission. Re-running resumes.
pub const AUTH_HALT: u8 = 3;
/// Stopped early (Ctrl-C, SIGTERM, time window) with work left. Re-running resumes.
pub const STOPPED: u8 = 4;
/// Internal error: database, I/O.
pub const INTERNAL: u8 = 5;

/// An error that is the user's to fix (a bad flag, setting, mapping file or path): exit 2.
///
/// Commands wrap such errors in this type so `main` can tell them from internal failures.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Maps an error from a command to its exit code: [`USAGE`] when a [`UsageError`] or a
/// configuration error sits anywhere in its chain, [`INTERNAL`] otherwise.
pub fn code_for(error: &anyhow::Error) -> u8 {
    let usage = error.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause
                .downcast_ref::<crate::ingest::IngestError>()
                .is_some_and(|e| e.is_usage())
            || cause.is::<crate::config::ConfigError>()
            || matches!(
                cause.downcast_ref::<crate::store::StoreError>(),
                Some(crate::store::StoreError::NoSuchRun(_) | crate::store::StoreError::NoRuns)
            )
            || cause.is::<crate::ingest::MappingError>()
            || cause.is::<crate::kapture::TargetError>()
            || cause.is::<crate::store::files::FileError>()
    });
    if usage { USAGE } else { INTERNAL }
}

//! Logging set-up: tracing to stderr, level from -v/-q, `RUST_LOG` overrides, text or JSON.

use std::io::Write;

use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

/// Installs the global subscriber. Called once by `main`; tests call the library directly.
pub fn init(global: &GlobalArgs) {
    let level = match (global.verbose, global.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("kapsync={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match global.log_format.unwrap_or(LogFormat::Text) {
        LogFormat::Text => builder.without_time().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Reports a command's error on stderr with its chain of causes.
pub fn report_error(error: &anyhow::Error) {
    let mut message = format!("error: {error}");
    let mut shown = vec![error.to_string()];
    for cause in error.chain().skip(1) {
        // Wrapped errors often repeat their source's text: say each thing once.
        let text = cause.to_string();
        if shown.iter().any(|s| s.contains(&text)) {
            continue;
        }
        message.push_str(&format!("\n  caused by: {text}"));
        shown.push(text);
    }
    if is_disk_full(error) {
        message.push_str(
            "\n  hint: the disk holding the database is full. Free space and run the same \
             command again: it resumes where it stopped, and nothing already recorded is lost",
        );
    }
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Whether the error comes from a full disk (SQLite's SQLITE_FULL, or the OS's ENOSPC).
pub fn is_disk_full(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let sqlite_full = cause
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .is_some_and(|e| e.code().as_deref() == Some("13"));
        let os_full = cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull);
        sqlite_full || os_full
    })
}

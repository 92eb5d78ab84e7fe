//! Logging set-up: tracing to stderr, level from -v/-q, `RUST_LOG` overrides, text or JSON.

use std::io::{IsTerminal as _, Write};

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines
    Text,
    /// One JSON object per line
    Json,
}

/// Installs the global subscriber: `verbose` and `quiet` count `-v` and `-q`. Called once by
/// `main`; tests call the library directly.
pub fn init(verbose: u8, quiet: u8, format: Option<LogFormat>) {
    let level = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("kapsync={level},warn")));
    // Colour codes only on a terminal: in a pipe or a cron log they are noise. NO_COLOR still
    // turns them off on a terminal (setting `with_ansi` overrides tracing's own check of it).
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // Every line carries its UTC time (RFC 3339): cron mail and `>> sync.log` need it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| AboveTheBar)
        .with_ansi(colour)
        .with_target(false);
    let _ = match format.unwrap_or(LogFormat::Text) {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Most characters shown of one line of an error report.
const MAX_ERROR_PART_CHARS: usize = 1000;

/// Stderr, but above the progress bar when one is drawn: the bar is cleared, the line
/// written, the bar drawn again. The formatter writes each event in one call.
struct AboveTheBar;

impl Write for AboveTheBar {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::report::progress::write_above_bar(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reports a command's error on stderr with its chain of causes.
pub fn report_error(error: &anyhow::Error) {
    let _ = writeln!(std::io::stderr(), "{}", error_text(error));
}

/// An error and its chain of causes as lines of text, and advice when the disk is full.
///
/// Library errors keep their cause only as a source, so each cause is printed once. Each
/// part is escaped and cut (a cause may quote a server or a file), so an error cannot drive
/// the terminal or flood a cron log.
fn error_text(error: &anyhow::Error) -> String {
    let part =
        |text: String| crate::report::terminal::shown_lines_within(&text, MAX_ERROR_PART_CHARS);
    let mut message = format!("error: {}", part(error.to_string()));
    for cause in error.chain().skip(1) {
        message.push_str(&format!("\n  caused by: {}", part(cause.to_string())));
    }
    if is_disk_full(error) {
        message.push_str(
            "\n  hint: the disk holding the database is full. Free space and run the same \
             command again: it resumes where it stopped, and nothing already recorded is lost",
        );
    }
    message
}

/// Whether the error comes from a full disk (SQLite's SQLITE_FULL, or the OS's ENOSPC).
fn is_disk_full(error: &anyhow::Error) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to read {path}")]
    struct ReadError {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    fn not_found() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
    }

    #[test]
    fn each_cause_is_shown_once_in_order() {
        let error = anyhow::Error::new(ReadError {
            path: "a.csv",
            source: not_found(),
        })
        .context("failed to ingest a.csv");
        assert_eq!(
            error_text(&error),
            "error: failed to ingest a.csv\n  caused by: failed to read a.csv\n  caused by: no \
             such file"
        );
    }

    #[test]
    fn a_full_disk_gets_advice() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let error = anyhow::Error::new(full).context("failed to open the database k.db");
        let text = error_text(&error);
        assert!(
            text.contains("hint: the disk holding the database is full"),
            "{text}"
        );
    }
}

//! `kapsync retry`: put a run's failed rows back to pending, their attempt history kept.

use serde::Serialize;

use crate::cli::RetryArgs;
use crate::config::Settings;
use crate::exit::{self, UsageError};
use crate::report::text;
use crate::store::ERROR_CLASSES;

/// The `--json` shape of a retry.
#[derive(Debug, Serialize)]
struct RetryReport<'a> {
    run: &'a str,
    requeued: u64,
}

/// Runs `kapsync retry`.
pub async fn run(settings: &Settings, args: RetryArgs) -> anyhow::Result<u8> {
    // Flags first: a typo changes nothing and needs no database.
    let class = args.class.as_deref().map(check_class).transpose()?;
    let grep = match args.grep.as_deref() {
        Some("") => {
            return Err(UsageError(
                "--grep needs some text to look for; leave it out to retry every failed row".into(),
            )
            .into());
        }
        other => other,
    };
    let store = super::open_existing_store(settings).await?;
    let run = store.resolve_run(args.run.as_deref()).await?;
    let requeued = store.requeue_failed(run.id, class, grep).await?;
    store.close().await;
    if args.json {
        text::print_json(&RetryReport {
            run: &run.name,
            requeued,
        })?;
    } else {
        text::print(&message(&run.name, requeued))?;
    }
    Ok(exit::OK)
}

/// Accepts a known error class, or says which ones exist.
fn check_class(class: &str) -> Result<&str, UsageError> {
    if ERROR_CLASSES.contains(&class) {
        Ok(class)
    } else {
        Err(UsageError(format!(
            "unknown error class {class:?} for --class; use one of: {}",
            ERROR_CLASSES.join(", ")
        )))
    }
}

/// The text summary: how many rows went back and the command that sends them.
fn message(run: &str, requeued: u64) -> String {
    match requeued {
        0 => format!("No failed rows of run {run} match; nothing changed.\n"),
        n => {
            let rows = if n == 1 { "row" } else { "rows" };
            let word = text::shell_word(run);
            format!(
                "Put {n} failed {rows} of run {run} back to pending; \
                 `kapsync run --run {word}` sends them.\n"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_is_checked_against_the_known_ones() {
        assert_eq!(
            check_class("transient_in_doubt").unwrap(),
            "transient_in_doubt"
        );
        let error = check_class("Rejected").unwrap_err().to_string();
        assert!(error.contains("\"Rejected\""), "{error}");
        assert!(
            error.contains("rejected, transient, transient_in_doubt"),
            "{error}"
        );
    }

    #[test]
    fn message_names_the_count_and_the_next_command() {
        assert_eq!(
            message("night 1", 12),
            "Put 12 failed rows of run night 1 back to pending; \
             `kapsync run --run 'night 1'` sends them.\n"
        );
        assert!(message("n", 1).starts_with("Put 1 failed row of run n back"));
        assert_eq!(
            message("n", 0),
            "No failed rows of run n match; nothing changed.\n"
        );
    }
}

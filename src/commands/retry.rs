//! `kapsync retry`: put a run's failed rows back to pending, their attempt history kept.

use serde::Serialize;

use crate::cli::RetryArgs;
use crate::config::Settings;
use crate::exit::{self, UsageError};
use crate::report::text;
use crate::store::{ERROR_CLASSES, Requeued, RowFilter};

/// The `--json` shape of a retry.
#[derive(Debug, Serialize)]
struct RetryReport<'a> {
    run: &'a str,
    #[serde(flatten)]
    done: Requeued,
}

/// Runs `kapsync retry`.
pub async fn run(settings: &Settings, args: RetryArgs) -> anyhow::Result<u8> {
    // Flags first: a typo changes nothing and needs no database.
    let filter = row_filter(args.class.as_deref(), args.grep.as_deref())?;
    let store = super::open_existing_store(settings).await?;
    let run = store.resolve_run(args.run.as_deref()).await?;
    let done = store
        .requeue_failed(run.id, filter, args.include_superseded)
        .await?;
    store.close().await;
    if args.json {
        text::print_json(&RetryReport {
            run: &run.name,
            done,
        })?;
    } else {
        text::print(&message(&super::hint_prefix(settings), &run.name, done))?;
    }
    Ok(exit::OK)
}

/// The `--class` and `--grep` filters, checked.
pub(super) fn row_filter<'a>(
    class: Option<&'a str>,
    grep: Option<&'a str>,
) -> Result<RowFilter<'a>, UsageError> {
    let class = class.map(check_class).transpose()?;
    let grep = match grep {
        Some("") => {
            return Err(UsageError(
                "--grep needs some text to look for; leave it out to take every row".into(),
            ));
        }
        other => other,
    };
    Ok(RowFilter { class, grep })
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

/// The text summary: how many rows went back and the command that sends them, and how many
/// were left out and why.
fn message(prefix: &str, run: &str, done: Requeued) -> String {
    let word = text::shell_word(run);
    let rows = |n: u64| if n == 1 { "row" } else { "rows" };
    let mut out = match done.requeued {
        0 if done.superseded == 0 => {
            format!("No failed rows of run {run} match; nothing changed.\n")
        }
        0 => format!("No failed row of run {run} was put back.\n"),
        n => format!(
            "Put {n} failed {} of run {run} back to pending; \
             `{prefix} run --run {word}` sends them.\n",
            rows(n)
        ),
    };
    if done.superseded > 0 {
        out.push_str(&format!(
            "Left out {} failed {}: a later row of the same ticket succeeded or is on its way, \
             and sending the older one now would overwrite it \
             (`{prefix} retry --run {word} --include-superseded` sends them anyway).\n",
            done.superseded,
            rows(done.superseded)
        ));
    }
    out
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
        let done = |requeued, superseded| Requeued {
            requeued,
            superseded,
        };
        assert_eq!(
            message("kapsync", "night 1", done(12, 0)),
            "Put 12 failed rows of run night 1 back to pending; \
             `kapsync run --run 'night 1'` sends them.\n"
        );
        assert!(message("kapsync", "n", done(1, 0)).starts_with("Put 1 failed row of run n back"));
        assert_eq!(
            message("kapsync", "n", done(0, 0)),
            "No failed rows of run n match; nothing changed.\n"
        );
        let left_out = message("kapsync --db n.db", "n", done(2, 1));
        assert!(
            left_out.contains("`kapsync --db n.db run --run n` sends them"),
            "{left_out}"
        );
        assert!(
            left_out.contains(
                "Left out 1 failed row: a later row of the same ticket succeeded or is on its way"
            ),
            "{left_out}"
        );
        assert!(
            left_out.contains("`kapsync --db n.db retry --run n --include-superseded`"),
            "{left_out}"
        );
    }
}

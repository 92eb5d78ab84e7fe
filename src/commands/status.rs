//! `kapsync status`: counts per state for one run, its pace and its most frequent errors.

use serde::Serialize;

use crate::cli::StatusArgs;
use crate::config::Settings;
use crate::exit;
use crate::report::activity::{self, Pace, TopError};
use crate::report::text;
use crate::store::{Counts, Run, SourceSummary, TargetBinding};

/// Kinds of error `status` lists.
const TOP_ERRORS: i64 = 5;

#[derive(Debug, Serialize)]
struct StatusReport {
    #[serde(flatten)]
    run: Run,
    counts: Counts,
    total: i64,
    /// The failed rows split: open ones, and ones a later row of their sync key resolved.
    failures: Failures,
    /// The Kapture target the database belongs to (none before its first request).
    target: Option<TargetBinding>,
    #[serde(flatten)]
    pace: Pace,
    top_errors: Vec<TopError>,
    sources: Vec<SourceSummary>,
}

#[derive(Debug, Serialize)]
struct Failures {
    open: i64,
    resolved: i64,
}

/// Runs `kapsync status`.
pub async fn run(settings: &Settings, args: StatusArgs) -> anyhow::Result<u8> {
    let store = super::open_existing_store(settings).await?;
    let run = store.resolve_run(args.run.as_deref()).await?;
    let counts = store.counts(run.id).await?;
    let sources = store.sources(run.id).await?;
    let resolved = if counts.failed > 0 {
        store.resolved_failures(run.id).await?
    } else {
        0
    };
    let pace = Pace::new(
        &store.activity(run.id).await?,
        &counts,
        crate::store::now_ms(),
    );
    let top_errors: Vec<TopError> = store
        .top_attempt_errors(run.id, TOP_ERRORS)
        .await?
        .into_iter()
        .map(TopError::new)
        .collect();
    if args.json {
        let target = store.target_binding().await?;
        text::print_json(&StatusReport {
            total: counts.total(),
            run,
            counts,
            failures: Failures {
                open: counts.failed - resolved,
                resolved,
            },
            target,
            pace,
            top_errors,
            sources,
        })?;
    } else {
        let mut out = text::status(&run, &counts, resolved, &sources);
        out.push_str(&pace.text());
        out.push_str(&activity::errors_text(&top_errors));
        text::print(&out)?;
    }
    store.close().await;
    Ok(exit::OK)
}

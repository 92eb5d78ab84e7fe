//! `kapsync status`: counts per state for one run.

use serde::Serialize;

use crate::cli::StatusArgs;
use crate::config::Settings;
use crate::exit;
use crate::report::text;
use crate::store::{Counts, Run, SourceSummary, TargetBinding};

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
            sources,
        })?;
    } else {
        text::print(&text::status(&run, &counts, resolved, &sources))?;
    }
    store.close().await;
    Ok(exit::OK)
}

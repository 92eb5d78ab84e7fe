//! `kapsync status`: counts per state for one run.

use serde::Serialize;

use crate::cli::StatusArgs;
use crate::config::Settings;
use crate::exit;
use crate::report::text;
use crate::store::{Counts, Run, SourceSummary};

#[derive(Debug, Serialize)]
struct StatusReport {
    #[serde(flatten)]
    run: Run,
    counts: Counts,
    total: i64,
    sources: Vec<SourceSummary>,
}

/// Runs `kapsync status`.
pub async fn run(settings: &Settings, args: StatusArgs) -> anyhow::Result<u8> {
    let store = super::open_existing_store(settings).await?;
    let run = store.resolve_run(args.run.as_deref()).await?;
    let counts = store.counts(run.id).await?;
    let sources = store.sources(run.id).await?;
    if args.json {
        text::print_json(&StatusReport {
            total: counts.total(),
            run,
            counts,
            sources,
        })?;
    } else {
        text::print(&text::status(&run, &counts, &sources))?;
    }
    store.close().await;
    Ok(exit::OK)
}

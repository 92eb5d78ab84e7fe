//! `kapsync skip`: mark a run's failed or pending rows `skipped`, for rows a person decides not
//! to send; the reason is kept on each row.

use serde::Serialize;

use crate::cli::SkipArgs;
use crate::config::Settings;
use crate::exit;
use crate::report::text;

/// The reason kept when `--reason` is not given.
pub const DEFAULT_REASON: &str = "skipped by kapsync skip";

/// The `--json` shape of a skip.
#[derive(Debug, Serialize)]
struct SkipReport<'a> {
    run: &'a str,
    skipped: u64,
    reason: &'a str,
}

/// Runs `kapsync skip`.
pub async fn run(settings: &Settings, args: SkipArgs) -> anyhow::Result<u8> {
    let filter = super::retry::row_filter(args.class.as_deref(), args.grep.as_deref())?;
    let reason = args.reason.as_deref().unwrap_or(DEFAULT_REASON);
    let store = super::open_existing_store(settings).await?;
    let run = store.resolve_run(args.run.as_deref()).await?;
    let skipped = store.skip_rows(run.id, filter, reason).await?;
    store.close().await;
    if args.json {
        text::print_json(&SkipReport {
            run: &run.name,
            skipped,
            reason,
        })?;
    } else {
        let rows = if skipped == 1 { "row" } else { "rows" };
        text::print(&format!(
            "Marked {skipped} failed or pending {rows} of run {} skipped ({reason}); \
             nothing of them will be sent.\n",
            run.name
        ))?;
    }
    Ok(exit::OK)
}

//! `kapsync runs`: every run with its counts.

use crate::cli::JsonArg;
use crate::config::Settings;
use crate::exit;
use crate::report::text;

/// Runs `kapsync runs`.
pub async fn run(settings: &Settings, args: JsonArg) -> anyhow::Result<u8> {
    let store = super::open_existing_store(settings).await?;
    let list = store.run_summaries().await?;
    if args.json {
        text::print_json(&serde_json::json!({ "runs": list }))?;
    } else {
        text::print(&text::runs(&list))?;
    }
    store.close().await;
    Ok(exit::OK)
}

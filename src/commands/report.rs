//! `kapsync report`: one run's (or every run's) migration report, as an HTML page or JSON.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::cli::ReportArgs;
use crate::config::Settings;
use crate::exit::{self, UsageError};
use crate::report::model::{self, Scope};
use crate::report::{html, text};

/// Runs `kapsync report`.
pub async fn run(settings: &Settings, args: ReportArgs) -> anyhow::Result<u8> {
    let store = super::open_existing_store(settings).await?;
    let runs = if args.all {
        let runs = store.all_runs().await?;
        if runs.is_empty() {
            return Err(crate::store::StoreError::NoRuns.into());
        }
        runs
    } else {
        vec![store.resolve_run(args.run.as_deref()).await?]
    };
    let scope = Scope {
        all: args.all,
        prefix: super::hint_prefix(settings),
        runs,
    };
    let report = model::build(&store, &scope)
        .await
        .context("failed to read the report's series")?;
    store.close().await;
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&report)?;
        json.push('\n');
        json
    } else {
        let title = match (args.all, scope.runs.as_slice()) {
            (false, [run]) => format!("kapsync report: run {}", run.name),
            _ => "kapsync report: all runs".to_owned(),
        };
        html::render(&report, &title)?
    };
    match args.output.as_deref().filter(|p| *p != Path::new("-")) {
        Some(path) => {
            let mut file = create_private(path).map_err(|e| {
                UsageError(format!(
                    "failed to create the report file {}: {e}",
                    path.display()
                ))
            })?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.flush())
                .with_context(|| format!("failed to write the report to {}", path.display()))?;
            tracing::info!("wrote the report to {}", path.display());
        }
        None => text::print(&text)?,
    }
    Ok(exit::OK)
}

/// Creates (or truncates) the report file; a new one is readable by its owner only.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

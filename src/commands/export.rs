//! `kapsync export`: write a run's rows, with their outcome, as CSV or JSONL.

use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context as _;

use crate::cli::{ExportArgs, ExportFormat};
use crate::config::Settings;
use crate::exit::{self, UsageError};
use crate::report::export::{CsvShape, ExportError, ExportWriter, collect_extra_keys};
use crate::store::{JobRow, JobState, Store};

/// Rows fetched per query: large enough that statements are few, small enough that memory
/// stays flat for a run of millions of rows.
const PAGE: i64 = 2_000;

/// Runs `kapsync export`.
pub async fn run(settings: &Settings, args: ExportArgs) -> anyhow::Result<u8> {
    let state = args.state.as_deref().map(parse_state).transpose()?;
    let store = super::open_existing_store(settings).await?;
    let run = store.resolve_run(args.run.as_deref()).await?;

    // The output is opened before the first pass, so a bad path fails at once. It is the
    // user's to fix (a missing directory, no permission): a usage error.
    let to_file = args.output.as_deref().filter(|p| *p != Path::new("-"));
    let out: Box<dyn Write> = match to_file {
        Some(path) => Box::new(create_private(path).map_err(|e| {
            UsageError(format!(
                "failed to create the export file {}: {e}",
                path.display()
            ))
        })?),
        None => Box::new(std::io::stdout()),
    };
    let out = BufWriter::with_capacity(64 * 1024, out);

    // CSV needs its columns before the first row: a first pass finds every extra key. The
    // second pass stops at the last row the first one saw, so rows ingested meanwhile do
    // not arrive without columns.
    let (shape, last_id) = match args.format {
        ExportFormat::Csv => {
            let (keys, last_id) = extra_keys(&store, run.id, state).await?;
            (Some(CsvShape::new(keys)), last_id)
        }
        ExportFormat::Jsonl => (None, i64::MAX),
    };

    let written = match write_rows(&store, run.id, state, last_id, shape, out).await {
        Ok(n) => n,
        Err(e)
            if e.downcast_ref::<ExportError>()
                .is_some_and(ExportError::is_broken_pipe) =>
        {
            store.close().await;
            return Ok(exit::OK);
        }
        Err(e) => {
            return Err(e).with_context(|| match to_file {
                Some(path) => format!("failed to export run {} to {}", run.name, path.display()),
                None => format!("failed to export run {}", run.name),
            });
        }
    };
    store.close().await;
    if let Some(path) = to_file {
        let rows = if written == 1 { "row" } else { "rows" };
        tracing::info!(
            rows = written,
            "exported {written} {rows} of run {} to {}",
            run.name,
            path.display()
        );
    }
    Ok(exit::OK)
}

/// Accepts a row state name, or says which ones exist.
fn parse_state(name: &str) -> Result<JobState, UsageError> {
    JobState::parse(name).ok_or_else(|| {
        let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        UsageError(format!(
            "unknown state {name:?} for --state; use one of: {}",
            names.join(", ")
        ))
    })
}

/// The first pass: the union of the extra keys of the selected rows, and the last row's id.
async fn extra_keys(
    store: &Store,
    run_id: i64,
    state: Option<JobState>,
) -> anyhow::Result<(BTreeSet<String>, i64)> {
    let mut keys = BTreeSet::new();
    let mut after = 0;
    loop {
        let page = store.job_rows(run_id, state, after, PAGE).await?;
        for row in &page {
            collect_extra_keys(row, &mut keys)?;
        }
        match page.last() {
            Some(last) => after = last.id,
            None => return Ok((keys, after)),
        }
    }
}

/// The second pass: writes the selected rows up to `last_id` and returns how many.
async fn write_rows<W: Write>(
    store: &Store,
    run_id: i64,
    state: Option<JobState>,
    last_id: i64,
    shape: Option<CsvShape>,
    out: W,
) -> anyhow::Result<u64> {
    let mut writer = match shape {
        Some(shape) => ExportWriter::csv(out, shape)?,
        None => ExportWriter::jsonl(out),
    };
    let mut written = 0;
    let mut after = 0;
    'pages: loop {
        let page: Vec<JobRow> = store.job_rows(run_id, state, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for row in &page {
            if row.id > last_id {
                break 'pages;
            }
            writer.write(row)?;
            written += 1;
        }
    }
    writer.finish()?;
    Ok(written)
}

/// Creates (or truncates) the export file; a new one is readable by its owner only, since
/// an export holds customer data.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_are_checked() {
        assert_eq!(parse_state("in_flight").unwrap(), JobState::InFlight);
        let error = parse_state("done").unwrap_err().to_string();
        assert!(
            error.contains("pending, in_flight, succeeded, failed, invalid, skipped"),
            "{error}"
        );
    }
}

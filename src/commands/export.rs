//! `kapsync export`: write a run's rows, with their outcome, as CSV or JSONL.

use std::collections::BTreeSet;
use std::io::{BufWriter, IsTerminal as _, Write};
use std::path::Path;

use anyhow::Context as _;

use crate::cli::{ExportArgs, ExportFormat};
use crate::config::Settings;
use crate::exit::{self, UsageError};
use crate::report::export::{CsvShape, ExportError, ExportWriter, collect_extra_keys};
use crate::report::terminal::TerminalWriter;
use crate::store::{JobRow, JobState, Store};

/// Rows fetched per query: large enough that statements are few, small enough that memory
/// stays flat for a run of millions of rows.
const PAGE: i64 = 2_000;

/// Runs `kapsync export`.
pub async fn run(settings: &Settings, args: ExportArgs) -> anyhow::Result<u8> {
    let state = args.state.as_deref().map(parse_state).transpose()?;
    let rows = Rows {
        state,
        grep: super::retry::row_filter(None, args.grep.as_deref())?.grep,
    };
    let store = super::open_existing_store(settings).await?;
    let run = store.resolve_run(args.run.as_deref()).await?;

    // The output is opened before the first pass, so a bad path fails at once. It is the
    // user's to fix (a missing directory, no permission, an existing file): a usage error.
    let to_file = args.output.as_deref().filter(|p| *p != Path::new("-"));
    let temp = match to_file {
        Some(path) => Some(private_temp(path, args.force)?),
        None => None,
    };
    let out: Box<dyn Write + '_> = match &temp {
        Some(temp) => Box::new(temp.as_file()),
        // Cells come from files and servers: a terminal gets them escaped.
        None if std::io::stdout().is_terminal() => Box::new(TerminalWriter::new(std::io::stdout())),
        None => Box::new(std::io::stdout()),
    };
    let out = BufWriter::with_capacity(64 * 1024, out);

    // CSV needs its columns before the first row: a first pass finds every extra key. The
    // second pass stops at the last row the first one saw, so rows ingested meanwhile do
    // not arrive without columns.
    let (shape, last_id) = match args.format {
        ExportFormat::Csv => {
            let (keys, last_id) = extra_keys(&store, run.id, rows).await?;
            (Some(CsvShape::new(keys)), last_id)
        }
        ExportFormat::Jsonl => (None, i64::MAX),
    };

    let written = match write_rows(&store, run.id, rows, last_id, shape, out).await {
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
    if let (Some(path), Some(temp)) = (to_file, temp) {
        put_in_place(temp, path, args.force)?;
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

/// Which rows of the run are exported: `--state` and `--grep`.
#[derive(Debug, Clone, Copy)]
struct Rows<'a> {
    state: Option<JobState>,
    grep: Option<&'a str>,
}

impl Rows<'_> {
    /// The page of selected rows after row `after`.
    async fn page(&self, store: &Store, run_id: i64, after: i64) -> anyhow::Result<Vec<JobRow>> {
        Ok(store
            .job_rows_matching(run_id, self.state, self.grep, after, PAGE)
            .await?)
    }
}

/// The first pass: the union of the extra keys of the selected rows, and the last row's id.
async fn extra_keys(
    store: &Store,
    run_id: i64,
    rows: Rows<'_>,
) -> anyhow::Result<(BTreeSet<String>, i64)> {
    let mut keys = BTreeSet::new();
    let mut after = 0;
    loop {
        let page = rows.page(store, run_id, after).await?;
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
    rows: Rows<'_>,
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
        let page = rows.page(store, run_id, after).await?;
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

/// A temporary file beside the export (mode 0600, created anew with `O_EXCL`, so never
/// through a link), to be renamed into place once complete. An existing output is refused
/// unless `force`.
fn private_temp(path: &Path, force: bool) -> Result<tempfile::NamedTempFile, UsageError> {
    let exists = std::fs::symlink_metadata(path).is_ok();
    if exists && !force {
        return Err(UsageError(format!(
            "the export file {} already exists: pass --force to replace it, or choose \
             another name",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    tempfile::Builder::new()
        .prefix(&format!(".{}.", name.as_deref().unwrap_or("export")))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| {
            UsageError(format!(
                "failed to create the export file {}: {e}",
                path.display()
            ))
        })
}

/// Renames the finished export into place: replacing what is there only with `force` (a
/// link is replaced, not followed), otherwise never over a file that appeared meanwhile.
fn put_in_place(temp: tempfile::NamedTempFile, path: &Path, force: bool) -> anyhow::Result<()> {
    temp.as_file()
        .sync_all()
        .with_context(|| format!("failed to write the export file {}", path.display()))?;
    let placed = if force {
        temp.persist(path)
    } else {
        temp.persist_noclobber(path)
    };
    placed.map_err(|e| {
        UsageError(format!(
            "failed to put the export file in place at {}: {}; pass --force to replace an \
             existing file",
            path.display(),
            e.error
        ))
    })?;
    Ok(())
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

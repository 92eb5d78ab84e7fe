//! `kapsync ingest`: read files into a run's job table.

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::{IngestArgs, IngestOptions};
use crate::config::Settings;
use crate::exit;
use crate::ingest::{self, FileSummary, IngestConfig, Mapping};
use crate::report::{progress::ByteBar, text};
use crate::store::{DeltaOptions, Run, Store};

/// The `--json` shape of an ingest.
#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub run: String,
    pub run_created: bool,
    pub files: Vec<FileSummary>,
    pub rows_read: i64,
    pub valid: i64,
    pub invalid: i64,
    pub added: i64,
    /// Valid rows to be sent: new, or changed since their sync key's latest row.
    pub changed: i64,
    /// Valid rows stored `skipped`: unchanged since their sync key's latest row.
    pub unchanged: i64,
    /// Pending rows skipped for a newer row of their sync key (`--supersede`).
    pub superseded: i64,
}

impl IngestReport {
    /// The exit code: 0 when every row is valid, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.invalid > 0 {
            exit::ROWS_FAILED
        } else {
            exit::OK
        }
    }

    /// The text summary; hints start with `prefix` (see [`super::hint_prefix`]).
    pub fn text(&self, run: &Run, prefix: &str) -> String {
        text::ingest_summary(run, self.run_created, &self.files, prefix)
    }
}

/// Runs `kapsync ingest`.
pub async fn run(settings: &Settings, args: IngestArgs) -> anyhow::Result<u8> {
    let store = super::open_store(settings).await?;
    let (run, report) = ingest_into(&store, settings, &args.input, args.run.as_deref()).await?;
    if args.json {
        text::print_json(&report)?;
    } else {
        let prefix = super::hint_prefix(settings);
        text::print(&report.text(&run, &prefix))?;
        if store.counts(run.id).await?.pending > 0 {
            let run = text::shell_word(&run.name);
            // Before its first request a database knows no target: the hint that works as
            // printed is the rehearsal.
            let hint = if store.target_binding().await?.is_some() {
                format!("Next: {prefix} run --run {run}\n")
            } else {
                format!(
                    "Next: {prefix} run --run {run} --dry-run   (then without --dry-run, with \
                     --subdomain NAME or --base-url URL)\n"
                )
            };
            text::print(&hint)?;
        }
    }
    store.close().await;
    Ok(report.exit_code())
}

/// Ingests every file of `input` into the named run (created when missing) or a new timed
/// run. Shared by `ingest` and `sync`.
pub async fn ingest_into(
    store: &Store,
    settings: &Settings,
    input: &IngestOptions,
    run_name: Option<&str>,
) -> anyhow::Result<(Run, IngestReport)> {
    let resolved = settings.ingest(input)?;
    let mapping = match &resolved.mapping {
        Some(path) => Mapping::load(path)?,
        None => Mapping::default(),
    };
    // Every path is checked before the run is created, so a typo leaves nothing behind.
    ingest::check_inputs(&input.files, input.format)?;
    let (run, run_created) = match run_name {
        Some(name) => store.get_or_create_run(name).await?,
        None => (store.create_timed_run().await?, true),
    };
    let supersede = input.supersede || mapping.supersede();
    let config = IngestConfig {
        mapping,
        format: input.format,
        max_record_bytes: resolved.max_record_bytes,
        bytes_read: Default::default(),
        delta: DeltaOptions {
            skip_unchanged: !input.resend_unchanged,
            supersede,
        },
    };
    let mut files = Vec::new();
    for path in &input.files {
        let total = std::fs::metadata(path).ok().map(|m| m.len());
        let bar = ByteBar::start(
            &path.display().to_string(),
            total,
            config.bytes_read.clone(),
            settings.progress,
        );
        let summary = ingest::ingest_file(store, &run, path, &config).await;
        bar.finish();
        if summary.is_err() && run_created {
            // A run this command made and could not fill is not left behind, empty.
            if let Err(error) = store.discard_empty_run(run.id).await {
                tracing::warn!("failed to remove the empty run {}: {error}", run.name);
            }
        }
        let summary = summary.with_context(|| format!("failed to ingest {}", path.display()))?;
        tracing::debug!(path = %summary.path, rows = summary.rows_read, "ingested");
        files.push(summary);
    }
    let sum = |f: fn(&FileSummary) -> i64| files.iter().map(f).sum();
    let report = IngestReport {
        run: run.name.clone(),
        run_created,
        rows_read: sum(|f| f.rows_read),
        valid: sum(|f| f.valid),
        invalid: sum(|f| f.invalid),
        added: sum(|f| f.added),
        changed: sum(|f| f.changed),
        unchanged: sum(|f| f.unchanged),
        superseded: sum(|f| f.superseded),
        files,
    };
    Ok((run, report))
}

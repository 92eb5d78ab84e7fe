//! `kapsync ingest`: read files into a run's job table.

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::{IngestArgs, IngestOptions};
use crate::config::Settings;
use crate::exit::{self, UsageError};
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
    /// The flags an ingest with this mapping needs besides the files (` --mapping m.toml`),
    /// for hints.
    #[serde(skip)]
    pub ingest_flags: String,
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
        text::ingest_summary(
            run,
            self.run_created,
            &self.files,
            prefix,
            &self.ingest_flags,
        )
    }
}

/// Refuses to add rows to a run whose files were mapped by another mapping file (or none):
/// rows mapped two ways in one run are rarely meant, and the raw values would go out.
async fn check_same_mapping(store: &Store, run: &Run, mapping: &Mapping) -> anyhow::Result<()> {
    let named = |name: &str, fingerprint: &str| {
        if fingerprint.is_empty() {
            "no mapping file".to_owned()
        } else if name.is_empty() {
            "a mapping".to_owned()
        } else {
            format!("mapping {name}")
        }
    };
    let before = store.run_mappings(run.id).await?;
    if let Some((name, fingerprint)) = before
        .iter()
        .find(|(_, fingerprint)| fingerprint != mapping.fingerprint())
    {
        let again = if fingerprint.is_empty() {
            "without --mapping".to_owned()
        } else {
            format!("with --mapping {}", text::shell_word(name))
        };
        return Err(UsageError(format!(
            "run {} was ingested with {}, and this ingest uses {}: ingest {again} as before \
             (if that file changed, or to map these files differently on purpose, add \
             --mapping-changed)",
            run.name,
            named(name, fingerprint),
            named(mapping.name(), mapping.fingerprint()),
        ))
        .into());
    }
    Ok(())
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
    let mut mapping = match &resolved.mapping {
        Some(path) => Mapping::load(path)?,
        None => Mapping::default(),
    };
    if let Some(list) = &input.sub_statuses {
        let list: Vec<String> = list
            .iter()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if list.is_empty() {
            return Err(UsageError("--sub-statuses lists no value".to_owned()).into());
        }
        mapping = mapping.with_sub_statuses(list);
    }
    let encoding = match &input.encoding {
        Some(label) => Some(
            ingest::decode::encoding_for_label(label)
                .map_err(|e| UsageError(format!("--encoding: {e}")))?,
        ),
        None => None,
    };
    // Every path is checked before the run is created, so a typo leaves nothing behind.
    ingest::check_inputs(&input.files, input.format)?;
    let (run, run_created) = match run_name {
        Some(name) => store.get_or_create_run(name).await?,
        None => (store.create_timed_run().await?, true),
    };
    if !run_created && !input.mapping_changed {
        check_same_mapping(store, &run, &mapping).await?;
    }
    let supersede = input.supersede || mapping.supersede();
    let event_keys = mapping.names_events();
    let config = IngestConfig {
        // The flags win over the mapping's [source] table.
        encoding: encoding.or(mapping.encoding),
        delimiter: input.delimiter.or(mapping.delimiter),
        mapping,
        format: input.format,
        max_record_bytes: resolved.max_record_bytes,
        bytes_read: Default::default(),
        delta: DeltaOptions {
            skip_unchanged: !input.resend_unchanged,
            supersede,
            event_keys,
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
    let mut ingest_flags = String::new();
    if let Some(path) = &resolved.mapping {
        ingest_flags.push_str(" --mapping ");
        ingest_flags.push_str(&text::shell_word(&path.to_string_lossy()));
    }
    let report = IngestReport {
        ingest_flags,
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

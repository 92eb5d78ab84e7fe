//! Reading input files into a run: CSV and JSONL records, mapping, validation, storage.
//!
//! A parser thread reads, maps and validates records and hands batches to the async side,
//! which inserts them with [`crate::store::IngestWriter`]; memory stays flat however large
//! the file. Every record ends as a stored row, valid (`pending`) or `invalid` with a reason
//! naming the field; only a file that cannot be read at all is an error.

pub mod csv;
pub mod decode;
pub mod delimiter;
pub mod delta;
mod error;
mod format;
pub mod guess;
pub mod jsonl;
pub mod mapping;
mod parser;
pub mod times;
pub mod validate;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use error::{IngestError, MappingError};
pub use format::{InputFormat, check_inputs, detect_format};
pub use mapping::{FieldValues, Mapping, MappingFileError, Plan, ValueCount};

use format::{display_path, format_name};

use crate::store::{DeltaOptions, IngestWriter, Run, SourceProgress, SourceStart, Store};

use parser::{Batch, Parser};

/// Largest accepted input record, in bytes, when `--max-record-bytes` is not given.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// Rows handed from the parser thread to the writer at a time: one INSERT statement's worth.
/// Larger batches only hold more rows in memory (5,000 cost 10 MB of peak memory, no speed).
/// (The same as the store's rows per statement.)
const BATCH_ROWS: usize = 1_000;
/// Rows per committed transaction: the most an interrupted ingest re-reads.
const COMMIT_ROWS: i64 = 100_000;
/// Invalid rows quoted in the summary.
const SAMPLE_LIMIT: usize = 5;
/// Read buffer of the parser.
const READ_BUFFER: usize = 256 * 1024;

/// What happened to one input file.
#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    pub path: String,
    pub format: InputFormat,
    /// `ingested`, `resumed` (an interrupted ingest finished) or `already_ingested`.
    pub outcome: &'static str,
    pub rows_read: i64,
    pub valid: i64,
    pub invalid: i64,
    /// Rows stored by this call (0 when the content was already ingested).
    pub added: i64,
    /// Valid rows stored by this call that are new or changed (to be sent).
    pub changed: i64,
    /// Valid rows stored `skipped`: equal to what their sync key last sent (or has on its way).
    pub unchanged: i64,
    /// Pending rows skipped because a newer row of their sync key came (`--supersede`).
    pub superseded: i64,
    pub ignored_columns: Vec<String>,
    /// The first invalid rows: line and reason.
    pub invalid_samples: Vec<InvalidSample>,
    /// The encoding the file was read in (`utf-8`, `windows-1252`, `utf-16le`, ...).
    pub encoding: String,
    /// CSV: the field delimiter (`,` `;` `tab` `|`).
    pub delimiter: Option<&'static str>,
    /// CSV: whether the delimiter was found on the header line rather than given.
    pub delimiter_detected: bool,
    /// Rows refused because they are not UTF-8.
    pub not_utf8_rows: u64,
    /// The encoding those rows read as, when they all do: pass it as `--encoding`.
    pub suggested_encoding: Option<&'static str>,
    /// The listed fields' source values, with counts and what each became.
    pub values: Vec<FieldValues>,
}

/// One invalid row quoted in a summary.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InvalidSample {
    pub line: i64,
    pub reason: String,
}

/// How to ingest: shared by every file of one command.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub mapping: Mapping,
    pub format: Option<InputFormat>,
    /// `--encoding`; UTF-8 (or a byte order mark's) when not given.
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// `--delimiter`; found on the header line when not given.
    pub delimiter: Option<u8>,
    pub max_record_bytes: u64,
    /// Bytes read so far, for a progress display.
    pub bytes_read: Arc<AtomicU64>,
    /// Skipping unchanged rows and superseding older pending ones.
    pub delta: DeltaOptions,
}

/// Ingests one file (or `-` for standard input) into `run`.
pub async fn ingest_file(
    store: &Store,
    run: &Run,
    path: &Path,
    config: &IngestConfig,
) -> Result<FileSummary, IngestError> {
    let shown = display_path(path);
    let format = detect_format(path, config.format)?;
    let is_stdin = path == Path::new("-");
    let mut settings_hash = format!(
        "{}:{}:{}",
        format_name(format),
        config.max_record_bytes,
        config.mapping.fingerprint()
    );
    // Only settings that were given: a file ingested before these flags existed, with the
    // same settings, is still the same ingest.
    if let Some(encoding) = config.encoding {
        settings_hash.push_str(&format!(":encoding={}", encoding.name()));
    }
    if let Some(delimiter) = config.delimiter {
        settings_hash.push_str(&format!(":delimiter={delimiter}"));
    }
    let read_error = |source| IngestError::Read {
        path: shown.clone(),
        source,
    };
    // A file's hash is known before reading it; standard input's only at the end.
    let (hash, start) = if is_stdin {
        let placeholder = format!("stdin:{}:{}", std::process::id(), crate::store::now_ms());
        let start = store
            .begin_source(
                run.id,
                &shown,
                &placeholder,
                &settings_hash,
                format_name(format),
            )
            .await?;
        (None, start)
    } else {
        let owned = path.to_path_buf();
        let hash = tokio::task::spawn_blocking(move || hash_file(&owned))
            .await
            .map_err(|e| read_error(io::Error::other(e)))?
            .map_err(read_error)?;
        let start = store
            .begin_source(run.id, &shown, &hash, &settings_hash, format_name(format))
            .await?;
        (Some(hash), start)
    };
    let mut summary = FileSummary {
        path: shown.clone(),
        format,
        outcome: "ingested",
        rows_read: 0,
        valid: 0,
        invalid: 0,
        added: 0,
        changed: 0,
        unchanged: 0,
        superseded: 0,
        ignored_columns: Vec::new(),
        invalid_samples: Vec::new(),
        encoding: "utf-8".to_owned(),
        delimiter: None,
        delimiter_detected: false,
        not_utf8_rows: 0,
        suggested_encoding: None,
        values: Vec::new(),
    };
    let (source_id, progress) = match start {
        SourceStart::Done { progress, .. } => {
            summary.outcome = "already_ingested";
            summary.rows_read = progress.rows_read;
            summary.valid = progress.rows_valid;
            summary.invalid = progress.rows_invalid;
            return Ok(summary);
        }
        SourceStart::Resume {
            source_id,
            progress,
        } => {
            summary.outcome = "resumed";
            (source_id, progress)
        }
        SourceStart::New { source_id } => (source_id, SourceProgress::default()),
    };
    store
        .set_source_mapping(
            source_id,
            config.mapping.name(),
            config.mapping.fingerprint(),
        )
        .await?;
    let resume_after = progress.last_line;

    let mut writer: IngestWriter = store.ingest_writer(run.id, source_id).await?;
    writer.compare_with_earlier(config.delta).await?;
    let mut valid_added = 0;
    let parsed = async {
        let input = open_input(path, config.bytes_read.clone()).map_err(read_error)?;
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Batch>(4);
        let parser = Parser {
            path: shown.clone(),
            format,
            mapping: config.mapping.clone(),
            max_record_bytes: usize::try_from(config.max_record_bytes).unwrap_or(usize::MAX),
            resume_after,
            progress,
            sender,
            encoding: config.encoding,
            delimiter: config.delimiter,
            not_utf8: 0,
            windows_1252: 0,
        };
        let parse = tokio::task::spawn_blocking(move || parser.run(input));
        let mut uncommitted = 0;
        while let Some(batch) = receiver.recv().await {
            let rows = batch.jobs.len() as i64;
            valid_added += batch
                .jobs
                .iter()
                .filter(|j| j.invalid_reason.is_none())
                .count() as i64;
            writer.write(batch.jobs).await?;
            summary.added += rows;
            uncommitted += rows;
            if uncommitted >= COMMIT_ROWS {
                writer.commit(batch.progress).await?;
                uncommitted = 0;
            }
        }
        parse.await.map_err(|e| read_error(io::Error::other(e)))?
    }
    .await;
    let report = match parsed {
        Ok(report) => report,
        Err(error) => {
            if let Err(cleanup) = writer.abandon().await {
                tracing::warn!("failed to clean up after {shown}: {cleanup}");
            }
            return Err(error);
        }
    };
    let hash = hash.or(report.stdin_hash).unwrap_or_default();
    // The last chunks are decided, inserted and counted when flushed (writes are pipelined).
    writer.flush().await?;
    let delta = writer.delta_counts();
    summary.unchanged = delta.unchanged;
    summary.superseded = delta.superseded;
    summary.changed = valid_added - delta.unchanged;
    let kept = writer.finish(report.progress, &hash).await?;
    summary.rows_read = report.progress.rows_read;
    summary.valid = report.progress.rows_valid;
    summary.invalid = report.progress.rows_invalid;
    summary.ignored_columns = report.ignored;
    summary.invalid_samples = report.samples;
    summary.encoding = report.encoding;
    if let Some((delimiter, detected)) = report.delimiter {
        summary.delimiter = Some(delimiter::shown(delimiter));
        summary.delimiter_detected = detected;
    }
    summary.not_utf8_rows = report.not_utf8;
    if report.not_utf8 > 0 && report.windows_1252 == report.not_utf8 {
        summary.suggested_encoding = Some("windows-1252");
    }
    summary.values = report.values;
    if !kept {
        summary.outcome = "already_ingested";
        summary.added = 0;
        summary.changed = 0;
        summary.unchanged = 0;
        summary.superseded = 0;
    }
    Ok(summary)
}

/// The SHA-256 of a file's content, hex-encoded.
fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; READ_BUFFER];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The input with a byte counter (for progress) and, for standard input, a running hash.
struct Input {
    inner: Box<dyn Read + Send>,
    bytes_read: Arc<AtomicU64>,
    hasher: Option<Sha256>,
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

fn open_input(path: &Path, bytes_read: Arc<AtomicU64>) -> io::Result<Input> {
    if path == Path::new("-") {
        Ok(Input {
            inner: Box::new(io::stdin()),
            bytes_read,
            hasher: Some(Sha256::new()),
        })
    } else {
        Ok(Input {
            inner: Box::new(File::open(path)?),
            bytes_read,
            hasher: None,
        })
    }
}

//! Reading input files into a run: CSV and JSONL records, mapping, validation, storage.
//!
//! A parser thread reads, maps and validates records and hands batches to the async side,
//! which inserts them with [`crate::store::IngestWriter`]; memory stays flat however large
//! the file. Every record ends as a stored row, valid (`pending`) or `invalid` with a reason
//! naming the field; only a file that cannot be read at all is an error.

pub mod csv;
pub mod delta;
mod error;
mod format;
pub mod jsonl;
pub mod mapping;
pub mod validate;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use error::{IngestError, MappingError};
pub use format::{InputFormat, check_inputs, detect_format};
pub use mapping::{Mapping, MappingFileError, Plan};

use format::{display_path, format_name};

use crate::store::{DeltaOptions, IngestWriter, NewJob, Run, SourceProgress, SourceStart, Store};

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
    let settings_hash = format!(
        "{}:{}:{}",
        format_name(format),
        config.max_record_bytes,
        config.mapping.fingerprint()
    );
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

/// Rows for the writer, with the source's totals as of the batch's last row.
struct Batch {
    jobs: Vec<NewJob>,
    progress: SourceProgress,
}

/// What the parser thread reports at the end.
struct ParseReport {
    progress: SourceProgress,
    ignored: Vec<String>,
    samples: Vec<InvalidSample>,
    stdin_hash: Option<String>,
}

/// The parser thread's state.
struct Parser {
    path: String,
    format: InputFormat,
    mapping: Mapping,
    max_record_bytes: usize,
    resume_after: i64,
    progress: SourceProgress,
    sender: tokio::sync::mpsc::Sender<Batch>,
}

impl Parser {
    fn run(mut self, input: Input) -> Result<ParseReport, IngestError> {
        let mut reader = BufReader::with_capacity(READ_BUFFER, input);
        let start = reader.fill_buf().map_err(|e| self.read_error(e))?;
        if let Some(encoding) = wide_encoding(start) {
            return Err(IngestError::Encoding {
                path: self.path.clone(),
                encoding,
            });
        }
        let mut samples = Vec::new();
        let ignored = match self.format {
            InputFormat::Csv => self.csv(&mut reader, &mut samples)?,
            InputFormat::Jsonl => self.jsonl(&mut reader, &mut samples)?,
        };
        let stdin_hash = reader
            .into_inner()
            .hasher
            .map(|h| format!("{:x}", h.finalize()));
        Ok(ParseReport {
            progress: self.progress,
            ignored,
            samples,
            stdin_hash,
        })
    }

    fn read_error(&self, source: io::Error) -> IngestError {
        IngestError::Read {
            path: self.path.clone(),
            source,
        }
    }

    /// Counts one record and adds it to the batch; sends the batch when full.
    fn push(
        &mut self,
        batch: &mut Vec<NewJob>,
        samples: &mut Vec<InvalidSample>,
        job: NewJob,
    ) -> bool {
        self.progress.last_line = job.line;
        self.progress.rows_read += 1;
        if let Some(reason) = &job.invalid_reason {
            self.progress.rows_invalid += 1;
            if samples.len() < SAMPLE_LIMIT {
                samples.push(InvalidSample {
                    line: job.line,
                    reason: reason.clone(),
                });
            }
        } else {
            self.progress.rows_valid += 1;
        }
        batch.push(job);
        if batch.len() >= BATCH_ROWS {
            return self.flush(batch);
        }
        true
    }

    /// Sends the batch; false when the receiving side has gone (it failed).
    fn flush(&self, batch: &mut Vec<NewJob>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let jobs = std::mem::replace(batch, Vec::with_capacity(BATCH_ROWS));
        self.sender
            .blocking_send(Batch {
                jobs,
                progress: self.progress,
            })
            .is_ok()
    }

    fn csv<R: BufRead>(
        &mut self,
        input: R,
        samples: &mut Vec<InvalidSample>,
    ) -> Result<Vec<String>, IngestError> {
        let mut reader = csv::CsvReader::new(input, self.max_record_bytes);
        if !reader.read_record().map_err(|e| self.read_error(e))? {
            return Ok(Vec::new());
        }
        let header_error = |reason: String| IngestError::Header {
            path: self.path.clone(),
            reason,
        };
        if let Some(problem) = reader.problem() {
            return Err(header_error(self.framing_reason(problem)));
        }
        let mut headers = Vec::with_capacity(reader.len());
        for i in 0..reader.len() {
            let name = std::str::from_utf8(reader.field(i))
                .ok()
                .filter(|name| !name.contains('\0'))
                .ok_or_else(|| {
                    header_error(format!(
                        "column {} is not UTF-8 text (is the file UTF-16 or binary? save it as UTF-8)",
                        i + 1
                    ))
                })?;
            headers.push(name.trim().to_owned());
        }
        let plan = self
            .mapping
            .plan_csv(&headers)
            .map_err(|source| IngestError::Mapping {
                path: self.path.clone(),
                source,
            })?;
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        while reader.read_record().map_err(|e| self.read_error(e))? {
            let line = reader.line() as i64;
            if line <= self.resume_after {
                continue;
            }
            let job = match self.csv_row(&reader, &headers, &plan) {
                Ok((update, key)) => valid_job(line, update, key),
                Err(invalid) => invalid_job(line, invalid),
            };
            if !self.push(&mut batch, samples, job) {
                return Ok(Vec::new());
            }
        }
        self.flush(&mut batch);
        Ok(plan.ignored().to_vec())
    }

    fn csv_row<R: BufRead>(
        &self,
        reader: &csv::CsvReader<R>,
        headers: &[String],
        plan: &Plan,
    ) -> Result<(mapping::Update, [u8; 16]), mapping::Invalid> {
        let invalid = |reason: String| mapping::Invalid {
            ticket_id: None,
            reason,
        };
        if let Some(problem) = reader.problem() {
            return Err(invalid(self.framing_reason(problem)));
        }
        if reader.len() != headers.len() {
            return Err(invalid(format!(
                "has {} fields, but the header has {}",
                reader.len(),
                headers.len()
            )));
        }
        let mut fields = Vec::with_capacity(headers.len());
        for (i, header) in headers.iter().enumerate() {
            match std::str::from_utf8(reader.field(i)) {
                // A NUL byte is valid UTF-8 but never text a person typed: it is what a
                // UTF-16 or binary file looks like byte by byte, and Kapture would get "\u0000".
                Ok(text) if text.contains('\0') => {
                    return Err(invalid(format!(
                        "column {:?} (field {}) contains a NUL byte at byte {} \
                         (is the file UTF-16 or binary?)",
                        header,
                        i + 1,
                        text.find('\0').unwrap_or_default()
                    )));
                }
                Ok(text) => fields.push(text),
                Err(e) => {
                    return Err(invalid(format!(
                        "column {:?} (field {}) is not valid UTF-8 at byte {}",
                        header,
                        i + 1,
                        e.valid_up_to()
                    )));
                }
            }
        }
        let update = plan.build_csv(&fields)?;
        let key = plan.sync_key_csv(&update.ticket_id, &fields);
        Ok((update, key))
    }

    /// Why a record's framing is unusable, with the limit when it is too large.
    fn framing_reason(&self, problem: &csv::FramingProblem) -> String {
        match problem {
            csv::FramingProblem::TooLarge { bytes } => format!(
                "record is {bytes} bytes, over the limit of {} (--max-record-bytes)",
                self.max_record_bytes
            ),
            other => other.to_string(),
        }
    }

    fn jsonl<R: BufRead>(
        &mut self,
        input: R,
        samples: &mut Vec<InvalidSample>,
    ) -> Result<Vec<String>, IngestError> {
        let mut reader = jsonl::LineReader::new(input, self.max_record_bytes);
        let plan = self.mapping.plan_json();
        let mut ignored = BTreeSet::new();
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        while reader.read_line().map_err(|e| self.read_error(e))? {
            let line = reader.line() as i64;
            if reader.oversize().is_none() && reader.bytes().trim_ascii().is_empty() {
                continue;
            }
            if line <= self.resume_after {
                continue;
            }
            let job = match self.json_row(&reader, &plan, &mut ignored) {
                Ok((update, key)) => valid_job(line, update, key),
                Err(invalid) => invalid_job(line, invalid),
            };
            if !self.push(&mut batch, samples, job) {
                return Ok(Vec::new());
            }
        }
        self.flush(&mut batch);
        Ok(ignored.into_iter().collect())
    }

    fn json_row<R: BufRead>(
        &self,
        reader: &jsonl::LineReader<R>,
        plan: &Plan,
        ignored: &mut BTreeSet<String>,
    ) -> Result<(mapping::Update, [u8; 16]), mapping::Invalid> {
        let invalid = |reason: String| mapping::Invalid {
            ticket_id: None,
            reason,
        };
        if let Some(bytes) = reader.oversize() {
            return Err(invalid(format!(
                "line is {bytes} bytes, over the limit of {} (--max-record-bytes)",
                self.max_record_bytes
            )));
        }
        let text = std::str::from_utf8(reader.bytes()).map_err(|e| {
            invalid(format!(
                "line is not valid UTF-8 at byte {}",
                e.valid_up_to()
            ))
        })?;
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| invalid(format!("line is not valid JSON: {e}")))?;
        match value {
            serde_json::Value::Object(object) => {
                let values = plan.delta_values_json(&object);
                let update = plan.build_json(object, ignored)?;
                let key = plan.sync_key_json(&update.ticket_id, &values);
                Ok((update, key))
            }
            other => Err(invalid(format!(
                "line is a JSON {}, not an object",
                mapping::json_kind(&other)
            ))),
        }
    }
}

/// The name of a wide Unicode encoding whose byte order mark `start` begins with.
fn wide_encoding(start: &[u8]) -> Option<&'static str> {
    if start.starts_with(b"\xFF\xFE\0\0") || start.starts_with(b"\0\0\xFE\xFF") {
        Some("UTF-32")
    } else if start.starts_with(b"\xFF\xFE") || start.starts_with(b"\xFE\xFF") {
        Some("UTF-16")
    } else {
        None
    }
}

fn valid_job(line: i64, update: mapping::Update, sync_key: [u8; 16]) -> NewJob {
    let digest = Sha256::digest(update.payload.as_bytes());
    let mut hash = [0; 16];
    hash.copy_from_slice(&digest[..16]);
    NewJob {
        line,
        ticket_id: Some(update.ticket_id),
        payload: Some(update.payload),
        payload_hash: Some(hash),
        invalid_reason: None,
        sync_key: Some(sync_key),
    }
}

fn invalid_job(line: i64, invalid: mapping::Invalid) -> NewJob {
    NewJob {
        line,
        ticket_id: invalid.ticket_id,
        payload: None,
        payload_hash: None,
        invalid_reason: Some(invalid.reason),
        sync_key: None,
    }
}

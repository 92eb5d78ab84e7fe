//! The parser thread of an ingest: decoding, CSV/JSONL records, mapping, batching.
//!
//! It reads one file start to end, turns every record into a stored row (valid or invalid
//! with a reason) and hands batches to the async writer; memory stays flat.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read};

use encoding_rs::{Encoding, UTF_8};
use sha2::{Digest, Sha256};

use super::InputFormat;
use super::decode::{self, Decoded};
use super::mapping::{self, FieldValues, Mapping, Plan};
use super::{
    BATCH_ROWS, IngestError, Input, InvalidSample, READ_BUFFER, SAMPLE_LIMIT, csv, delimiter, jsonl,
};
use crate::roundtrip::{UPDATE_KEY, is_export_record};
use crate::store::{NewJob, SourceProgress};

/// Rows for the writer, with the source's totals as of the batch's last row.
pub(super) struct Batch {
    pub(super) jobs: Vec<NewJob>,
    pub(super) progress: SourceProgress,
}

/// What the parser thread reports at the end.
pub(super) struct ParseReport {
    pub(super) progress: SourceProgress,
    pub(super) ignored: Vec<String>,
    pub(super) samples: Vec<InvalidSample>,
    pub(super) stdin_hash: Option<String>,
    /// The encoding the file was read in (`utf-8`, `windows-1252`, `utf-16le`).
    pub(super) encoding: String,
    /// CSV: the delimiter, and whether it was found rather than given.
    pub(super) delimiter: Option<(u8, bool)>,
    /// Rows refused for bytes that are not UTF-8, and how many of them read as Windows-1252.
    pub(super) not_utf8: u64,
    pub(super) windows_1252: u64,
    pub(super) values: Vec<FieldValues>,
}

/// The parser thread's state.
pub(super) struct Parser {
    pub(super) path: String,
    pub(super) format: InputFormat,
    pub(super) mapping: Mapping,
    pub(super) max_record_bytes: usize,
    pub(super) resume_after: i64,
    pub(super) progress: SourceProgress,
    pub(super) sender: tokio::sync::mpsc::Sender<Batch>,
    /// `--encoding`, when given.
    pub(super) encoding: Option<&'static Encoding>,
    /// `--delimiter`, when given.
    pub(super) delimiter: Option<u8>,
    pub(super) not_utf8: u64,
    pub(super) windows_1252: u64,
}

/// The file's text: as it is (UTF-8), or decoded from another encoding.
enum Text {
    Plain(BufReader<Input>),
    Decoded(BufReader<Decoded<BufReader<Input>>>),
}

impl Text {
    fn into_input(self) -> Input {
        match self {
            Text::Plain(reader) => reader.into_inner(),
            Text::Decoded(reader) => reader.into_inner().into_inner().into_inner(),
        }
    }
}

impl Read for Text {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Text::Plain(reader) => reader.read(buf),
            Text::Decoded(reader) => reader.read(buf),
        }
    }
}

impl BufRead for Text {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self {
            Text::Plain(reader) => reader.fill_buf(),
            Text::Decoded(reader) => reader.fill_buf(),
        }
    }

    fn consume(&mut self, amount: usize) {
        match self {
            Text::Plain(reader) => reader.consume(amount),
            Text::Decoded(reader) => reader.consume(amount),
        }
    }
}

/// The part of a file's start that holds its header line (at most 64 KiB).
fn header_line(head: &[u8]) -> Vec<u8> {
    let head = &head[..head.len().min(64 * 1024)];
    let end = head
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .unwrap_or(head.len());
    head[..end].to_vec()
}

impl Parser {
    pub(super) fn run(mut self, input: Input) -> Result<ParseReport, IngestError> {
        let mut raw = BufReader::with_capacity(READ_BUFFER, input);
        let start = raw.fill_buf().map_err(|e| self.read_error(e))?;
        if start.starts_with(b"\xFF\xFE\0\0") || start.starts_with(b"\0\0\xFE\xFF") {
            return Err(IngestError::Encoding {
                path: self.path.clone(),
                encoding: "UTF-32",
            });
        }
        let encoding = decode::choose(self.encoding, start);
        let mut text = if encoding == UTF_8 {
            Text::Plain(raw)
        } else {
            Text::Decoded(BufReader::with_capacity(
                READ_BUFFER,
                Decoded::new(raw, encoding),
            ))
        };
        let mut samples = Vec::new();
        let mut delimiter = None;
        let (ignored, values) = match self.format {
            InputFormat::Csv => {
                let head = text.fill_buf().map_err(|e| self.read_error(e))?;
                let found = self.delimiter.unwrap_or_else(|| delimiter::detect(head));
                delimiter = Some((found, self.delimiter.is_none()));
                let header = header_line(head);
                self.csv(&mut text, found, &header, &mut samples)?
            }
            InputFormat::Jsonl => self.jsonl(&mut text, &mut samples)?,
        };
        let stdin_hash = text
            .into_input()
            .hasher
            .map(|h| format!("{:x}", h.finalize()));
        Ok(ParseReport {
            progress: self.progress,
            ignored,
            samples,
            stdin_hash,
            encoding: decode::name(encoding),
            delimiter,
            not_utf8: self.not_utf8,
            windows_1252: self.windows_1252,
            values,
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
        delimiter: u8,
        header_line: &[u8],
        samples: &mut Vec<InvalidSample>,
    ) -> Result<(Vec<String>, Vec<FieldValues>), IngestError> {
        let mut reader =
            csv::CsvReader::new(input, self.max_record_bytes).with_delimiter(delimiter);
        if !reader.read_record().map_err(|e| self.read_error(e))? {
            return Ok((Vec::new(), Vec::new()));
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
        let plan = self.mapping.plan_csv(&headers).map_err(|mut source| {
            if let Some(other) = self.other_delimiter(header_line, delimiter) {
                source.0 = format!(
                    "{}; with --delimiter {} the file has every column the mapping names",
                    source.0,
                    match other {
                        b'\t' => "tab".to_owned(),
                        other => format!("'{}'", other as char),
                    }
                );
            }
            IngestError::Mapping {
                path: self.path.clone(),
                source,
            }
        })?;
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        while reader.read_record().map_err(|e| self.read_error(e))? {
            let line = reader.line() as i64;
            if line <= self.resume_after {
                continue;
            }
            let job = match self.csv_row(&reader, &headers, &plan) {
                Ok((update, key)) => valid_job(line, update, key),
                Err(invalid) => invalid_job(line, invalid, csv_raw(&reader, delimiter)),
            };
            if !self.push(&mut batch, samples, job) {
                return Ok((Vec::new(), Vec::new()));
            }
        }
        self.flush(&mut batch);
        Ok((plan.ignored().to_vec(), plan.values_report()))
    }

    /// Another delimiter with which the header line has every column the mapping names.
    fn other_delimiter(&self, header_line: &[u8], used: u8) -> Option<u8> {
        delimiter::DELIMITERS.into_iter().find(|&d| {
            if d == used {
                return false;
            }
            let mut reader = csv::CsvReader::new(header_line, usize::MAX).with_delimiter(d);
            if !matches!(reader.read_record(), Ok(true)) || reader.len() < 2 {
                return false;
            }
            let headers: Vec<String> = (0..reader.len())
                .map(|i| String::from_utf8_lossy(reader.field(i)).trim().to_owned())
                .collect();
            self.mapping.plan_csv(&headers).is_ok()
        })
    }

    fn csv_row<R: BufRead>(
        &mut self,
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
                    self.count_not_utf8(reader.all_bytes());
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

    /// Counts a row refused for bytes that are not UTF-8, and whether it reads as
    /// Windows-1252 (for the hint in the summary).
    fn count_not_utf8(&mut self, bytes: &[u8]) {
        self.not_utf8 += 1;
        if decode::looks_like_windows_1252(bytes) {
            self.windows_1252 += 1;
        }
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
    ) -> Result<(Vec<String>, Vec<FieldValues>), IngestError> {
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
                Err(invalid) => {
                    let raw = reader
                        .oversize()
                        .is_none()
                        .then(|| String::from_utf8_lossy(reader.bytes()).into_owned());
                    invalid_job(line, invalid, raw)
                }
            };
            if !self.push(&mut batch, samples, job) {
                return Ok((Vec::new(), Vec::new()));
            }
        }
        self.flush(&mut batch);
        Ok((ignored.into_iter().collect(), plan.values_report()))
    }

    fn json_row<R: BufRead>(
        &mut self,
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
        let text = match std::str::from_utf8(reader.bytes()) {
            Ok(text) => text,
            Err(e) => {
                self.count_not_utf8(reader.bytes());
                return Err(invalid(format!(
                    "line is not valid UTF-8 at byte {}",
                    e.valid_up_to()
                )));
            }
        };
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| invalid(format!("line is not valid JSON: {e}")))?;
        match value {
            serde_json::Value::Object(mut object) if is_export_record(&object) => {
                match object.remove(UPDATE_KEY) {
                    Some(serde_json::Value::Object(update)) => json_update(plan, update, ignored),
                    _ => Err(mapping::Invalid {
                        ticket_id: object
                            .get("ticket_id")
                            .and_then(|t| t.as_str())
                            .map(str::to_owned),
                        reason: "is an exported row without an update (it was invalid): put \
                                 its corrected fields in an object under \"update\""
                            .to_owned(),
                    }),
                }
            }
            serde_json::Value::Object(object) => json_update(plan, object, ignored),
            other => Err(invalid(format!(
                "line is a JSON {}, not an object",
                mapping::json_kind(&other)
            ))),
        }
    }
}

/// A JSON object's update and its sync key.
fn json_update(
    plan: &Plan,
    object: serde_json::Map<String, serde_json::Value>,
    ignored: &mut BTreeSet<String>,
) -> Result<(mapping::Update, [u8; 16]), mapping::Invalid> {
    let values = plan.delta_values_json(&object);
    let update = plan.build_json(object, ignored)?;
    let key = plan.sync_key_json(&update.ticket_id, &values);
    Ok((update, key))
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
        raw_record: None,
        sync_key: Some(sync_key),
    }
}

fn invalid_job(line: i64, invalid: mapping::Invalid, raw_record: Option<String>) -> NewJob {
    NewJob {
        line,
        ticket_id: invalid.ticket_id,
        payload: None,
        payload_hash: None,
        invalid_reason: Some(invalid.reason),
        raw_record,
        sync_key: None,
    }
}

/// A CSV record written back as one line of text (quoted where needed), for an invalid row:
/// what the reader kept of it, which is nothing for a record over the limit.
fn csv_raw<R: BufRead>(reader: &csv::CsvReader<R>, delimiter: u8) -> Option<String> {
    if matches!(reader.problem(), Some(csv::FramingProblem::TooLarge { .. })) {
        return None;
    }
    let mut line = String::new();
    for i in 0..reader.len() {
        if i > 0 {
            line.push(char::from(delimiter));
        }
        let field = String::from_utf8_lossy(reader.field(i));
        if field.contains([char::from(delimiter), '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&field.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(&field);
        }
    }
    Some(line)
}

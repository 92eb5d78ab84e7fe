//! Shaping job rows into export records (CSV with formulas defused, or JSONL) and writing them.
//!
//! A CSV export of failures is meant to be fixed and ingested again without a mapping file:
//! the Kapture fields sit in columns named like the fields, and every extra key of the
//! payloads in a column `extra.<key>`, which ingest passes through as the extra key again.

use std::collections::BTreeSet;
use std::io::Write;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::kapture::{KAPTURE_FIELDS, confirmed};
use crate::roundtrip::{CONFIRMED, EXTRA_PREFIX, META_COLUMNS, RAW_RECORD, defuse};
use crate::store::JobRow;

/// An export that could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing to the output failed.
    #[error("failed to write the export: {0}")]
    Write(#[source] std::io::Error),
    /// A stored payload is not a JSON object (the database was edited by hand or is damaged).
    #[error("failed to read the stored payload of {source_file} line {line}: {reason}")]
    Payload {
        source_file: String,
        line: i64,
        reason: String,
    },
    /// A row gained an extra key after the columns were chosen: rows changed state while the
    /// export ran (a runner was draining the run).
    #[error(
        "failed to export {source_file} line {line}: its extra key {key:?} was not among the \
         columns chosen when the export started (rows changed during the export); export again"
    )]
    NewKey {
        source_file: String,
        line: i64,
        key: String,
    },
}

impl ExportError {
    /// Whether the reader went away (`kapsync export | head`): not an error for the user.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ExportError::Write(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl From<csv::Error> for ExportError {
    fn from(error: csv::Error) -> Self {
        ExportError::Write(error.into())
    }
}

fn payload_of(row: &JobRow) -> Result<Option<Map<String, Value>>, ExportError> {
    let Some(text) = row.payload.as_deref() else {
        return Ok(None);
    };
    let bad = |reason: String| ExportError::Payload {
        source_file: row.source.clone(),
        line: row.line,
        reason,
    };
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(bad("not a JSON object".to_owned())),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// What Kapture's answer confirmed of a succeeded row, whole (the stored confirmation keeps
/// only what differs from the payload); `None` for other rows or a response that is not JSON.
fn confirmed_of(row: &JobRow, payload: Option<&Map<String, Value>>) -> Option<Value> {
    let response: Value = serde_json::from_str(row.response.as_deref()?).ok()?;
    Some(confirmed(&response, payload)).filter(|c| !c.is_null())
}

/// Adds the extra keys of a row's payload (those that are not Kapture fields) to `keys`.
pub fn collect_extra_keys(row: &JobRow, keys: &mut BTreeSet<String>) -> Result<(), ExportError> {
    if let Some(map) = payload_of(row)? {
        for key in map.keys() {
            if !KAPTURE_FIELDS.contains(&key.as_str()) && !keys.contains(key) {
                keys.insert(key.clone());
            }
        }
    }
    Ok(())
}

/// A cell's text for a payload value: strings as they are, anything else as compact JSON.
fn cell_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The CSV layout of one export: the fixed columns, then one column per extra key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvShape {
    extra: Vec<String>,
}

impl CsvShape {
    /// A layout with these extra keys (columns in the set's sorted order).
    pub fn new(extra: BTreeSet<String>) -> Self {
        Self {
            extra: extra.into_iter().collect(),
        }
    }

    /// The header row.
    pub fn header(&self) -> Vec<String> {
        META_COLUMNS
            .iter()
            .chain(KAPTURE_FIELDS.iter())
            .map(|c| (*c).to_owned())
            .chain(self.extra.iter().map(|k| format!("{EXTRA_PREFIX}{k}")))
            .chain([CONFIRMED.to_owned(), RAW_RECORD.to_owned()])
            .collect()
    }

    /// One row's cells, not yet defused. A row without a payload (invalid) has empty field
    /// cells except `ticket_id` when ingest could read it.
    pub fn record(&self, row: &JobRow) -> Result<Vec<String>, ExportError> {
        let mut cells = Vec::with_capacity(META_COLUMNS.len() + KAPTURE_FIELDS.len() + 4);
        cells.push(row.source.clone());
        cells.push(row.line.to_string());
        cells.push(row.state.clone());
        cells.push(row.attempts.to_string());
        cells.push(row.error_class.clone().unwrap_or_default());
        cells.push(row.error_message.clone().unwrap_or_default());
        cells.push(row.http_status.map(|s| s.to_string()).unwrap_or_default());
        let mut payload = payload_of(row)?.unwrap_or_default();
        let confirmed = confirmed_of(row, Some(&payload));
        for field in KAPTURE_FIELDS {
            let value = payload.remove(field);
            let cell = match (field, value) {
                ("ticket_id", None | Some(Value::Null)) => {
                    row.ticket_id.clone().unwrap_or_default()
                }
                (_, value) => cell_text(value.as_ref()),
            };
            cells.push(cell);
        }
        for key in &self.extra {
            cells.push(cell_text(payload.remove(key).as_ref()));
        }
        cells.push(confirmed.map(|c| c.to_string()).unwrap_or_default());
        cells.push(row.raw_record.clone().unwrap_or_default());
        if let Some(key) = payload.into_iter().map(|(k, _)| k).next() {
            return Err(ExportError::NewKey {
                source_file: row.source.clone(),
                line: row.line,
                key,
            });
        }
        Ok(cells)
    }
}

/// One JSONL export line.
#[derive(Debug, Serialize)]
pub struct JsonRecord<'a> {
    pub source_file: &'a str,
    pub source_line: i64,
    pub state: &'a str,
    pub attempts: i64,
    pub error_class: Option<&'a str>,
    pub error_message: Option<&'a str>,
    pub http_status: Option<i64>,
    pub ticket_id: Option<&'a str>,
    /// The update object as stored, `null` for invalid rows.
    pub update: Option<Map<String, Value>>,
    /// What Kapture's answer confirmed of a succeeded row: the ticket's id, status, sub-status,
    /// queue and the message (`null` for other rows).
    pub confirmed: Option<Value>,
    /// An invalid row's source record as read, to fix it from.
    pub raw_record: Option<&'a str>,
}

impl<'a> JsonRecord<'a> {
    /// Shapes one row.
    pub fn of(row: &'a JobRow) -> Result<Self, ExportError> {
        let update = payload_of(row)?;
        Ok(Self {
            confirmed: confirmed_of(row, update.as_ref()),
            source_file: &row.source,
            source_line: row.line,
            state: &row.state,
            attempts: row.attempts,
            error_class: row.error_class.as_deref(),
            error_message: row.error_message.as_deref(),
            http_status: row.http_status,
            ticket_id: row.ticket_id.as_deref(),
            update,
            raw_record: row.raw_record.as_deref(),
        })
    }
}

/// Writes export records to an output, CSV or JSONL.
#[derive(Debug)]
pub enum ExportWriter<W: Write> {
    /// CSV with a header row; every cell defused.
    Csv {
        writer: Box<csv::Writer<W>>,
        shape: CsvShape,
    },
    /// One JSON object per line.
    Jsonl(W),
}

impl<W: Write> ExportWriter<W> {
    /// A CSV writer; writes the header row at once.
    pub fn csv(out: W, shape: CsvShape) -> Result<Self, ExportError> {
        let mut writer = Box::new(csv::Writer::from_writer(out));
        write_defused(&mut writer, &shape.header())?;
        Ok(Self::Csv { writer, shape })
    }

    /// A JSONL writer.
    pub fn jsonl(out: W) -> Self {
        Self::Jsonl(out)
    }

    /// Writes one row.
    pub fn write(&mut self, row: &JobRow) -> Result<(), ExportError> {
        match self {
            Self::Csv { writer, shape } => {
                write_defused(writer, &shape.record(row)?)?;
            }
            Self::Jsonl(out) => {
                let mut line = serde_json::to_vec(&JsonRecord::of(row)?)
                    .map_err(|e| ExportError::Write(e.into()))?;
                line.push(b'\n');
                out.write_all(&line).map_err(ExportError::Write)?;
            }
        }
        Ok(())
    }

    /// Flushes everything written and returns the output.
    pub fn finish(self) -> Result<W, ExportError> {
        match self {
            Self::Csv { writer, .. } => writer
                .into_inner()
                .map_err(|e| ExportError::Write(e.into_error())),
            Self::Jsonl(mut out) => {
                out.flush().map_err(ExportError::Write)?;
                Ok(out)
            }
        }
    }
}

/// Writes one CSV record, every cell defused.
fn write_defused<W: Write>(
    writer: &mut csv::Writer<W>,
    cells: &[String],
) -> Result<(), ExportError> {
    for cell in cells {
        writer.write_field(defuse(cell).as_bytes())?;
    }
    writer.write_record(None::<&[u8]>)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(payload: Option<&str>) -> JobRow {
        JobRow {
            id: 7,
            source: "in.csv".to_owned(),
            line: 3,
            ticket_id: Some("000123456789".to_owned()),
            payload: payload.map(str::to_owned),
            state: "failed".to_owned(),
            attempts: 2,
            error_class: Some("rejected".to_owned()),
            error_message: Some("Invalid Format".to_owned()),
            http_status: Some(200),
            replayed: false,
            raw_record: None,
            response: None,
        }
    }

    #[test]
    fn csv_record_spreads_fields_and_extras() {
        let payload = r#"{"ticket_id":"000123456789","sub_status":"CL","comment":"a, \"b\"",
                          "callback_time":"2026-01-02 03:04:05","legacy":"x","n":5,
                          "tags":["a","b"]}"#;
        let mut keys = BTreeSet::new();
        collect_extra_keys(&row(Some(payload)), &mut keys).unwrap();
        assert_eq!(
            keys.iter().map(String::as_str).collect::<Vec<_>>(),
            ["legacy", "n", "tags"]
        );
        keys.insert("zz_other".to_owned());
        let shape = CsvShape::new(keys);
        let header = shape.header();
        assert_eq!(header[..7], META_COLUMNS);
        assert_eq!(header[7..13], KAPTURE_FIELDS);
        assert_eq!(
            header[13..],
            [
                "extra.legacy",
                "extra.n",
                "extra.tags",
                "extra.zz_other",
                "confirmed",
                "raw_record"
            ]
        );
        let cells = shape.record(&row(Some(payload))).unwrap();
        assert_eq!(
            cells,
            [
                "in.csv",
                "3",
                "failed",
                "2",
                "rejected",
                "Invalid Format",
                "200",
                "000123456789",
                "CL",
                "a, \"b\"",
                "2026-01-02 03:04:05",
                "",
                "",
                "x",
                "5",
                r#"["a","b"]"#,
                "",
                "",
                "",
            ]
        );
    }

    #[test]
    fn csv_record_of_an_invalid_row_keeps_only_the_ticket_id() {
        let mut invalid = row(None);
        invalid.state = "invalid".to_owned();
        invalid.http_status = None;
        invalid.raw_record = Some("000123456789;Résolu;\"a;b\"".to_owned());
        let shape = CsvShape::new(BTreeSet::from(["legacy".to_owned()]));
        let cells = shape.record(&invalid).unwrap();
        assert_eq!(cells.len(), shape.header().len());
        assert_eq!(cells[6], "");
        assert_eq!(cells[7], "000123456789");
        let (raw, fields) = cells[8..].split_last().unwrap();
        assert_eq!(shape.header()[cells.len() - 2], "confirmed");
        assert!(fields.iter().all(String::is_empty), "{cells:?}");
        assert_eq!(
            raw, "000123456789;Résolu;\"a;b\"",
            "the source record, to fix it from"
        );
    }

    #[test]
    fn csv_record_refuses_a_key_missing_from_the_columns() {
        let shape = CsvShape::new(BTreeSet::new());
        let error = shape
            .record(&row(Some(r#"{"ticket_id":"1","late":"x"}"#)))
            .unwrap_err();
        assert!(matches!(error, ExportError::NewKey { ref key, .. } if key == "late"));
        let error = shape.record(&row(Some("[1]"))).unwrap_err();
        assert!(error.to_string().contains("in.csv line 3"), "{error}");
    }

    #[test]
    fn json_record_keeps_the_payload_as_an_object() {
        let payload = r#"{"ticket_id":"000123456789","sub_status":"CL","n":5}"#;
        let row = row(Some(payload));
        let value = serde_json::to_value(JsonRecord::of(&row).unwrap()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "source_file": "in.csv", "source_line": 3, "state": "failed", "attempts": 2,
                "error_class": "rejected", "error_message": "Invalid Format",
                "http_status": 200, "ticket_id": "000123456789",
                "update": {"ticket_id": "000123456789", "sub_status": "CL", "n": 5},
                "confirmed": null,
                "raw_record": null,
            })
        );
        let invalid = JobRow {
            payload: None,
            ..row.clone()
        };
        let value = serde_json::to_value(JsonRecord::of(&invalid).unwrap()).unwrap();
        assert_eq!(value["update"], Value::Null);
    }

    #[test]
    fn csv_writer_defuses_cells_and_quotes_commas_and_newlines() {
        let shape = CsvShape::new(BTreeSet::new());
        let mut writer = ExportWriter::csv(Vec::new(), shape).unwrap();
        let payload = r#"{"ticket_id":"1","sub_status":"CL","comment":"=HYPERLINK(\"http://x\",\"a,b\")\nnext"}"#;
        writer.write(&row(Some(payload))).unwrap();
        let text = String::from_utf8(writer.finish().unwrap()).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "source_file,source_line,state,attempts,error_class,error_message,http_status,\
             ticket_id,sub_status,comment,callback_time,queue,disposition,confirmed,raw_record"
        );
        assert!(
            text.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"a,b\"\")\nnext\""),
            "{text}"
        );
    }
}

//! Proposing a mapping file from a sample of a CSV or JSONL export (`kapsync mapping init`).
//!
//! It reads the header (a JSONL file's keys, in the order first seen) and the first rows,
//! finds a CSV file's delimiter and encoding, guesses which column feeds each Kapture field, lists the status column's values as entries to
//! fill in, and proposes the `[formats]` that parse every sampled callback time. The TOML it
//! writes is accepted by `ingest` as it is; filling in the value table is the only edit
//! needed before sending.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read};

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};

use super::csv::CsvReader;
use super::decode::{self, Decoded};
use super::delimiter;
use super::mapping::TOP_VALUES;
use super::mapping::names::{field_or_alias, normalize};
use super::times::TimeRule;
use crate::kapture::KAPTURE_FIELDS;

/// Rows read to propose a mapping.
pub const SAMPLE_ROWS: usize = 10_000;

/// Callback time formats tried, in order of preference (day first before month first: a
/// sample whose days are all 12 or less fits both, and the comment says so).
const FORMATS: [&str; 12] = [
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M",
    "%d.%m.%Y %H:%M",
    "%d-%m-%Y %H:%M",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y",
    "%Y-%m-%d",
];

/// What a sample showed, and the mapping proposed for it.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// A CSV file's encoding and delimiter (`None` for JSONL, which is UTF-8).
    pub source: Option<(&'static Encoding, u8)>,
    pub rows: usize,
    pub toml: String,
}

/// Keys of a JSONL sample tracked at most: a file with more distinct keys is not a table.
const MAX_KEYS: usize = 1_000;

/// The text of a JSON value a column would hold: strings trimmed, numbers as written.
fn json_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads a sample of a JSONL export and proposes a mapping for it: its keys play the part of
/// CSV columns, the first key to suggest a field claims it. Lines that are not JSON objects
/// are passed over; a `kapsync export --format jsonl` line is read through its `update`.
pub fn propose_jsonl<R: Read>(input: R, file_name: &str) -> io::Result<Proposal> {
    let mut lines = super::jsonl::LineReader::new(BufReader::new(input), 1024 * 1024);
    let mut headers: Vec<String> = Vec::new();
    let mut columns: Vec<(&'static str, usize)> = Vec::new();
    let mut statuses: HashMap<String, (String, u64)> = HashMap::new();
    let mut times: Vec<String> = Vec::new();
    let mut rows = 0;
    while rows < SAMPLE_ROWS && lines.read_line()? {
        let Ok(serde_json::Value::Object(mut object)) =
            serde_json::from_slice::<serde_json::Value>(lines.bytes())
        else {
            continue;
        };
        if crate::roundtrip::is_export_record(&object)
            && let Some(serde_json::Value::Object(update)) =
                object.remove(crate::roundtrip::UPDATE_KEY)
        {
            object = update;
        }
        rows += 1;
        for key in object.keys() {
            if headers.len() < MAX_KEYS && !headers.contains(key) {
                headers.push(key.clone());
                if let Some(field) = guess_field(key)
                    && !columns.iter().any(|(f, _)| *f == field)
                {
                    columns.push((field, headers.len() - 1));
                }
            }
        }
        let value_of = |field: &str| {
            let (_, i) = columns.iter().find(|(f, _)| *f == field)?;
            object.get(&headers[*i]).and_then(json_text)
        };
        if let Some(value) = value_of("sub_status").filter(|v| !v.is_empty()) {
            let key = value.to_lowercase();
            if statuses.len() < 10_000 || statuses.contains_key(&key) {
                statuses.entry(key).or_insert((value, 0)).1 += 1;
            }
        }
        if let Some(value) = value_of("callback_time").filter(|v| !v.is_empty())
            && times.len() < SAMPLE_ROWS
            && !times.contains(&value)
        {
            times.push(value);
        }
    }
    if rows == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no line is a JSON object",
        ));
    }
    let toml = write_toml(file_name, None, rows, &headers, &columns, &statuses, &times);
    Ok(Proposal {
        source: None,
        rows,
        toml,
    })
}

/// Column name fragments (normalized) that suggest a field, beyond exact names and aliases.
const HINTS: [(&str, &str); 13] = [
    ("ticketid", "ticket_id"),
    ("ticketno", "ticket_id"),
    ("ticket", "ticket_id"),
    ("statu", "sub_status"),
    ("state", "sub_status"),
    ("estado", "sub_status"),
    ("comment", "comment"),
    ("note", "comment"),
    ("followup", "callback_time"),
    ("callback", "callback_time"),
    ("rappel", "callback_time"),
    ("queue", "queue"),
    ("disposition", "disposition"),
];

/// The field a column's name suggests.
fn guess_field(header: &str) -> Option<&'static str> {
    field_or_alias(header).or_else(|| {
        let n = normalize(header);
        HINTS.iter().find(|(h, _)| n.contains(h)).map(|(_, f)| *f)
    })
}

/// Reads a sample of `open()` (called twice: once raw to tell the encoding, once decoded)
/// and proposes a mapping for it. `file_name` is named in the comments.
pub fn propose<R: Read>(
    mut open: impl FnMut() -> io::Result<R>,
    file_name: &str,
) -> io::Result<Proposal> {
    let mut raw = BufReader::new(open()?);
    let start = raw.fill_buf()?.to_vec();
    let delimiter = delimiter::detect(&start);
    let encoding = match decode::bom_encoding(&start) {
        Some(encoding) => encoding,
        None => sniff_encoding(raw, delimiter)?,
    };
    let input: Box<dyn Read> = if encoding == UTF_8 {
        Box::new(open()?)
    } else {
        Box::new(Decoded::new(open()?, encoding))
    };
    let mut text = BufReader::new(input);
    let delimiter = delimiter::detect(text.fill_buf()?);
    let mut reader = CsvReader::new(text, 1024 * 1024).with_delimiter(delimiter);
    if !reader.read_record()? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the file is empty",
        ));
    }
    let headers: Vec<String> = (0..reader.len())
        .map(|i| String::from_utf8_lossy(reader.field(i)).trim().to_owned())
        .collect();
    let mut columns: Vec<(&'static str, usize)> = Vec::new();
    for (i, header) in headers.iter().enumerate() {
        if let Some(field) = guess_field(header)
            && !columns.iter().any(|(f, _)| *f == field)
        {
            columns.push((field, i));
        }
    }
    let column_of = |field: &str| columns.iter().find(|(f, _)| *f == field).map(|c| c.1);
    let status = column_of("sub_status");
    let callback = column_of("callback_time");
    // Lower-cased value -> (first spelling seen, rows): the mapping matches ignoring case.
    let mut statuses: HashMap<String, (String, u64)> = HashMap::new();
    let mut times: Vec<String> = Vec::new();
    let mut rows = 0;
    while rows < SAMPLE_ROWS && reader.read_record()? {
        rows += 1;
        if reader.problem().is_some() || reader.len() != headers.len() {
            continue;
        }
        let cell = |i: usize| String::from_utf8_lossy(reader.field(i)).trim().to_owned();
        if let Some(i) = status {
            let value = cell(i);
            let key = value.to_lowercase();
            if !value.is_empty() && (statuses.len() < 10_000 || statuses.contains_key(&key)) {
                statuses.entry(key).or_insert((value, 0)).1 += 1;
            }
        }
        if let Some(i) = callback {
            let value = cell(i);
            if !value.is_empty() && times.len() < SAMPLE_ROWS && !times.contains(&value) {
                times.push(value);
            }
        }
    }
    let toml = write_toml(
        file_name,
        Some((encoding, delimiter)),
        rows,
        &headers,
        &columns,
        &statuses,
        &times,
    );
    Ok(Proposal {
        source: Some((encoding, delimiter)),
        rows,
        toml,
    })
}

/// UTF-8 unless some sampled row is not, and those rows read as Windows-1252.
fn sniff_encoding<R: BufRead>(raw: R, delimiter: u8) -> io::Result<&'static Encoding> {
    let mut reader = CsvReader::new(raw, 1024 * 1024).with_delimiter(delimiter);
    let mut rows = 0;
    let mut windows = false;
    while rows <= SAMPLE_ROWS && reader.read_record()? {
        rows += 1;
        let bytes = reader.all_bytes();
        if std::str::from_utf8(bytes).is_err() {
            if !decode::looks_like_windows_1252(bytes) {
                return Ok(UTF_8);
            }
            windows = true;
        }
    }
    Ok(if windows { WINDOWS_1252 } else { UTF_8 })
}

/// The formats (fewest, in preference order) that parse every sampled time, whether a time
/// zone is needed, and the times nothing parses.
fn choose_formats(times: &[String]) -> (Vec<&'static str>, bool, Vec<&String>) {
    let utc = TimeRule::new(Vec::new(), Some("UTC")).expect("UTC exists");
    let canonical = TimeRule::default();
    let mut needs_zone = false;
    let mut left: Vec<&String> = Vec::new();
    for time in times {
        if canonical.convert(time).is_ok() {
            continue;
        }
        if utc.convert(time).is_ok() {
            needs_zone = true;
            continue;
        }
        left.push(time);
    }
    let mut chosen = Vec::new();
    while !left.is_empty() {
        let parses = |format: &str, time: &str| {
            TimeRule::new(vec![format.to_owned()], None)
                .is_ok_and(|rule| rule.convert(time).is_ok())
        };
        let best = FORMATS
            .iter()
            .map(|f| (f, left.iter().filter(|t| parses(f, t)).count()))
            .max_by(|a, b| a.1.cmp(&b.1).then(std::cmp::Ordering::Greater))
            .filter(|(_, n)| *n > 0);
        let Some((format, _)) = best else { break };
        chosen.push(*format);
        left.retain(|t| !parses(format, t));
    }
    (chosen, needs_zone, left)
}

/// A TOML string literal.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The proposed mapping file; `source` is a CSV file's encoding and delimiter.
fn write_toml(
    file_name: &str,
    source: Option<(&'static Encoding, u8)>,
    rows: usize,
    headers: &[String],
    columns: &[(&'static str, usize)],
    statuses: &HashMap<String, (String, u64)>,
    times: &[String],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Mapping proposed by `kapsync mapping init` from {file_name}"
    );
    let _ = writeln!(
        out,
        "# ({rows} rows sampled). Check the guesses, fill in [values.sub_status], then:"
    );
    let _ = writeln!(out, "#   kapsync ingest --mapping THIS_FILE {file_name}\n");
    let what = match source {
        Some((encoding, delimiter)) => {
            let _ = writeln!(out, "[source]");
            let _ = writeln!(out, "encoding = {}", quoted(&decode::name(encoding)));
            let _ = writeln!(out, "delimiter = {}\n", quoted(delimiter::shown(delimiter)));
            "column"
        }
        None => "key",
    };
    let _ = writeln!(out, "# Kapture field = {what} of {file_name}.");
    let _ = writeln!(out, "[columns]");
    for field in KAPTURE_FIELDS {
        match columns.iter().find(|(f, _)| *f == field) {
            Some((_, i)) => {
                let _ = writeln!(out, "{field} = {}", quoted(&headers[*i]));
            }
            None => {
                let _ = writeln!(out, "# {field} = \"...\"  (no {what} looked like it)");
            }
        }
    }
    let _ = writeln!(out);
    let mut values: Vec<(&String, &u64)> = statuses.values().map(|(v, n)| (v, n)).collect();
    values.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let _ = writeln!(
        out,
        "# Source status = Kapture sub_status key (matched ignoring case). Unlisted values are"
    );
    let _ = writeln!(
        out,
        "# sent as they are: uncomment each line and put its Kapture key between the quotes."
    );
    let _ = writeln!(out, "[values.sub_status]");
    for (value, count) in values.iter().take(TOP_VALUES) {
        let rows = if **count == 1 { "row" } else { "rows" };
        let _ = writeln!(out, "# {} = \"\"  # {count} {rows}", quoted(value));
    }
    if values.len() > TOP_VALUES {
        let _ = writeln!(out, "# ... and {} more values", values.len() - TOP_VALUES);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "# The sub_status keys Kapture accepts; any other value is refused before sending."
    );
    let _ = writeln!(
        out,
        "# [allowed]\n# sub_status = [\"OP\", \"P\", \"RS\", \"CL\"]\n"
    );
    let (formats, needs_zone, unparsed) = choose_formats(times);
    if !formats.is_empty() || needs_zone {
        let _ = writeln!(
            out,
            "# How the sampled callback times are written (first match wins)."
        );
        let _ = writeln!(out, "[formats]");
        if !formats.is_empty() {
            let list: Vec<String> = formats.iter().map(|f| quoted(f)).collect();
            let _ = writeln!(out, "callback_time = [{}]", list.join(", "));
            if formats[0].starts_with("%d/%m") {
                let _ = writeln!(
                    out,
                    "# Day first: if the file writes month first, use \"%m/%d/%Y ...\" instead."
                );
            }
        }
        if needs_zone {
            let _ = writeln!(
                out,
                "# Some times name an offset (Z or +hh:mm): they are converted into this zone,"
            );
            let _ = writeln!(
                out,
                "# the one Kapture reads callback times in. Set yours, e.g. \"Asia/Kolkata\"."
            );
            let _ = writeln!(out, "timezone = \"UTC\"");
        } else {
            let _ = writeln!(out, "# timezone = \"Asia/Kolkata\"");
        }
        let _ = writeln!(out);
    }
    for time in unparsed.iter().take(5) {
        let _ = writeln!(
            out,
            "# No known format parses the callback time {}",
            quoted(time)
        );
    }
    let unused: Vec<&String> = headers
        .iter()
        .enumerate()
        .filter(|(i, h)| !h.is_empty() && !columns.iter().any(|(_, c)| c == i))
        .map(|(_, h)| h)
        .collect();
    let _ = writeln!(
        out,
        "# Other {what}s, passed through as extra keys when uncommented."
    );
    let _ = writeln!(out, "[extra]");
    for header in unused {
        let key: String = header
            .chars()
            .map(|c| {
                if c.is_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let _ = writeln!(out, "# {} = {}", quoted(&key), quoted(header));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cover_every_sampled_time() {
        let times: Vec<String> = [
            "31/12/2026 18:00",
            "01/02/2027 09:30",
            "2026-12-31 10:00:00",
        ]
        .map(str::to_owned)
        .to_vec();
        let (formats, zone, left) = choose_formats(&times);
        assert_eq!(formats, ["%d/%m/%Y %H:%M"]);
        assert!(!zone && left.is_empty());
        let times: Vec<String> = ["12/31/2026 6:00 PM", "2026-12-31T18:00:00Z"]
            .map(str::to_owned)
            .to_vec();
        let (formats, zone, left) = choose_formats(&times);
        assert_eq!(formats, ["%m/%d/%Y %I:%M %p"]);
        assert!(zone && left.is_empty());
    }

    #[test]
    fn columns_are_guessed_from_their_names() {
        assert_eq!(guess_field("Ticket No."), Some("ticket_id"));
        assert_eq!(guess_field("Status"), Some("sub_status"));
        assert_eq!(guess_field("Latest Comment"), Some("comment"));
        assert_eq!(guess_field("Follow-up at"), Some("callback_time"));
        assert_eq!(guess_field("Statut"), Some("sub_status"));
        assert_eq!(guess_field("Rappel"), Some("callback_time"));
        assert_eq!(guess_field("Priority"), None);
    }
}

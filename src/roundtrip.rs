//! The export file format that ingest reads back: meta columns, `extra.` keys, defusing.
//!
//! `kapsync export` writes failures so they can be fixed and ingested again without a mapping
//! file; ingest recognizes such a file by its header. Both sides take the format from here, so
//! the round trip cannot drift.

use std::borrow::Cow;

/// The columns describing a row and its outcome, before the update fields.
pub const META_COLUMNS: [&str; 7] = [
    "source_file",
    "source_line",
    "state",
    "attempts",
    "error_class",
    "error_message",
    "http_status",
];

/// The prefix of a CSV column holding an extra (pass-through) key of the payload.
pub const EXTRA_PREFIX: &str = "extra.";

/// The characters that make a spreadsheet evaluate a cell that begins with them: OWASP's
/// list (`=` `+` `-` `@`, tab, carriage return), their full-width forms, which some
/// spreadsheets fold to ASCII before evaluating, and a leading NUL, which some strip.
pub const FORMULA_TRIGGERS: [char; 11] = [
    '=', '+', '-', '@', '\t', '\r', '\0', '\u{FF1D}', '\u{FF0B}', '\u{FF0D}', '\u{FF20}',
];

/// Whether [`defuse`] quotes `cell`: it begins with a formula trigger, after any leading
/// quotes (quoting those too is what lets [`undefuse`] restore every cell exactly).
fn needs_quote(cell: &str) -> bool {
    cell.trim_start_matches('\'').starts_with(FORMULA_TRIGGERS)
}

/// Makes a CSV cell inert for spreadsheets: a cell that begins with a [`FORMULA_TRIGGERS`]
/// character would be evaluated as a formula (CSV injection), so it gets a leading `'`,
/// which spreadsheets show as text and hide. A cell of quotes before a trigger (`'=x`) gets
/// one more, so that [`undefuse`] tells the two apart.
pub fn defuse(cell: &str) -> Cow<'_, str> {
    if needs_quote(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// The cell [`defuse`] was given: drops the quote it added, leaves every other cell alone.
/// Ingest applies it to the cells of a `kapsync export` CSV, so a fixed export re-ingests
/// with its values as they were.
pub fn undefuse(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if needs_quote(rest) => rest,
        _ => cell,
    }
}

/// The column (CSV) or key (JSONL) of an export before [`RAW_RECORD`]: what Kapture's answer
/// confirmed of a succeeded row (its ticket's id, status, sub-status, queue and the message),
/// as JSON. Ingest reads past it.
pub const CONFIRMED: &str = "confirmed";

/// The last column (CSV) or key (JSONL) of an export: an invalid row's source record as read,
/// to fix it from. Ingest reads past it.
pub const RAW_RECORD: &str = "raw_record";

/// The key of a `kapsync export --format jsonl` line that holds the update object.
pub const UPDATE_KEY: &str = "update";

/// Whether a JSONL object is a line of `kapsync export --format jsonl`: the meta keys and
/// an `update` key. Ingest reads such a line's `update` object as the row.
pub fn is_export_record(object: &serde_json::Map<String, serde_json::Value>) -> bool {
    object.contains_key(UPDATE_KEY) && META_COLUMNS.iter().all(|key| object.contains_key(*key))
}

/// Whether a CSV header is that of a `kapsync export` file (its cells were defused).
pub fn is_export_header(headers: &[String]) -> bool {
    META_COLUMNS
        .iter()
        .all(|column| headers.iter().any(|h| h == column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defuse_quotes_every_formula_trigger() {
        for cell in [
            "=1+1",
            "+1",
            "-2",
            "@x",
            "\tcmd",
            "\rcmd",
            "=HYPERLINK(\"x\")",
            "\u{FF1D}1+1",
            "\u{FF0B}1",
            "\u{FF0D}2",
            "\u{FF20}SUM(A1)",
            "\0=1",
        ] {
            assert_eq!(defuse(cell), format!("'{cell}"), "{cell:?}");
        }
    }

    #[test]
    fn defuse_leaves_safe_cells_borrowed() {
        for cell in [
            "", "plain", "1-2", "a=b", " =1", "'1", "'", "000123", "ticket@x", "\n=",
        ] {
            assert!(
                matches!(defuse(cell), Cow::Borrowed(c) if c == cell),
                "{cell:?}"
            );
        }
    }

    #[test]
    fn defuse_quotes_quotes_before_a_trigger_once_more() {
        assert_eq!(defuse("'=1"), "''=1");
        assert_eq!(defuse("''-2"), "'''-2");
    }

    #[test]
    fn undefuse_restores_every_cell_exactly() {
        for cell in [
            "",
            "plain",
            "=1+1",
            "-2 days",
            "@x",
            "\tcmd",
            "\rcmd",
            "'",
            "'1",
            "'=1",
            "''=1",
            "'''",
            "' -1",
            "a'=b",
            "'\u{FF1D}1",
            "\0",
            "'\0",
        ] {
            assert_eq!(undefuse(&defuse(cell)), cell, "{cell:?}");
        }
        // Cells no defuse wrote: a lone quote before a trigger is taken as defuse's.
        assert_eq!(undefuse("'=1"), "=1");
        assert_eq!(undefuse("'plain"), "'plain");
    }

    #[test]
    fn an_export_header_has_every_meta_column() {
        let mut header: Vec<String> = META_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
        header.push("ticket_id".to_owned());
        assert!(is_export_header(&header));
        header.remove(0);
        assert!(!is_export_header(&header));
    }
}

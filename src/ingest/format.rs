//! Input formats: told from `--format` or the file name, and the inputs checked before a run.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::IngestError;

/// Input file kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// Comma-separated values with a header row
    Csv,
    /// One JSON object per line (also .ndjson)
    Jsonl,
}

/// The format named by the flag, else by the extension.
pub fn detect_format(path: &Path, flag: Option<InputFormat>) -> Result<InputFormat, IngestError> {
    if let Some(format) = flag {
        return Ok(format);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") => Ok(InputFormat::Csv),
        Some("jsonl" | "ndjson") => Ok(InputFormat::Jsonl),
        _ => Err(IngestError::UnknownFormat(display_path(path))),
    }
}

pub(super) fn display_path(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}

/// The format's name as stored with the source.
pub(super) fn format_name(format: InputFormat) -> &'static str {
    match format {
        InputFormat::Csv => "csv",
        InputFormat::Jsonl => "jsonl",
    }
}

/// Paths given on the command line, checked to exist before anything is stored.
pub fn check_inputs(paths: &[PathBuf], format: Option<InputFormat>) -> Result<(), IngestError> {
    let stdin_count = paths.iter().filter(|p| *p == Path::new("-")).count();
    if stdin_count > 1 {
        return Err(IngestError::Read {
            path: "<stdin>".into(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "`-` may be given only once"),
        });
    }
    for path in paths {
        detect_format(path, format)?;
        if path != Path::new("-") {
            File::open(path).map_err(|source| IngestError::Read {
                path: display_path(path),
                source,
            })?;
        }
    }
    Ok(())
}

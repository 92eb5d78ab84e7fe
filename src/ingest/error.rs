//! The errors of an ingest: a file that cannot be read or mapped at all.

use std::io;

use crate::store::StoreError;

/// A mapping file that cannot be used, or one that does not fit the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(pub String);

/// An input that cannot be ingested at all.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be opened or read.
    #[error("failed to read {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The format cannot be told from the name.
    #[error("cannot tell the format of {0}: name it .csv, .jsonl or .ndjson, or pass --format")]
    UnknownFormat(String),
    /// The CSV header is unusable.
    #[error("{path}: the header row is unusable: {reason}")]
    Header { path: String, reason: String },
    /// The input starts with a UTF-16 (or UTF-32) byte order mark: it is not UTF-8 text.
    #[error(
        "{path}: the file is {encoding} (it starts with a byte order mark): save it as UTF-8 \
         and ingest it again"
    )]
    Encoding {
        path: String,
        encoding: &'static str,
    },
    /// The mapping does not fit this file.
    #[error("failed to apply the mapping to {path}")]
    Mapping {
        path: String,
        #[source]
        source: MappingError,
    },
    /// Storing rows failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    /// Whether the user can fix this by changing the command (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            IngestError::Store(e) => e.is_usage(),
            _ => true,
        }
    }
}

impl MappingError {
    /// Whether the user can fix this (exit code 2): always, the mapping file is theirs.
    pub fn is_usage(&self) -> bool {
        true
    }
}

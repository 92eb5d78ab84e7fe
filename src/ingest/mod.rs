//! Reading input files: CSV and JSONL records, the mapping onto Kapture fields, validation.

/// A mapping file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(pub String);

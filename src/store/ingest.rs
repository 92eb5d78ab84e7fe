//! Storing ingested rows: source files, multi-row inserts in large transactions, resumption.
//!
//! sqlx hands every statement to a worker thread, so the cost per statement dominates small
//! inserts. Rows go in as one `INSERT` of [`ROWS_PER_STATEMENT`] rows, inside transactions the
//! caller commits every few tens of thousands of rows together with the source file's
//! progress, so an interrupted ingest resumes exactly after its last committed line.
//!
//! That worker thread is the ingest's critical path (the parser runs on another core), so the
//! statement is shaped to give it little to do per row: the state and error class are
//! constants picked by an integer flag (a bound text is copied into a fresh allocation),
//! owned strings are handed over without a copy, and no CHECK is evaluated (see
//! [`IngestWriter`]). When the table held rows before the ingest, their sync keys are probed
//! on a second connection, whose SQLite thread runs beside the writer's (see `writer.rs`).

use super::{Store, StoreError, now_text};

/// Rows per multi-row INSERT: 8 bound values a row stay far below SQLite's 32,766 limit.
/// (Anonymous `?` only: SQLite looks numbered `?NNN` names up by a linear scan, which made a
/// 1000-row statement quadratic.)
pub const ROWS_PER_STATEMENT: usize = 1000;

/// One input record, ready to store: a valid update or an invalid row with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub line: i64,
    pub ticket_id: Option<String>,
    /// The JSON object to send (valid rows only).
    pub payload: Option<String>,
    /// A digest of the payload, to recognise the same update later.
    pub payload_hash: Option<[u8; 16]>,
    /// Why the row cannot be sent (invalid rows only).
    pub invalid_reason: Option<String>,
    /// A digest of the row's sync key (ticket_id plus the mapping's `[delta] key` values):
    /// rows with the same key update the same thing, so only a changed one is sent.
    pub sync_key: Option<[u8; 16]>,
    /// The source record as read, for an invalid row (at most the record limit of it).
    pub raw_record: Option<String>,
}

/// Where an ingest of a file starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStart {
    /// The same content was already ingested into this run: nothing to add.
    Done {
        source_id: i64,
        progress: SourceProgress,
    },
    /// An earlier ingest of the same content was interrupted: continue after
    /// `progress.last_line`.
    Resume {
        source_id: i64,
        progress: SourceProgress,
    },
    /// A new source file.
    New { source_id: i64 },
}

/// Running totals of one source file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceProgress {
    pub last_line: i64,
    pub rows_read: i64,
    pub rows_valid: i64,
    pub rows_invalid: i64,
}

impl Store {
    /// Registers a source file in a run, or finds an earlier ingest of the same content.
    /// The mappings a run's files were ingested with: (file name, digest), one per digest;
    /// files ingested before mappings were recorded are left out.
    pub async fn run_mappings(&self, run_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT coalesce(min(mapping_name), ''), mapping_fingerprint FROM source_files
             WHERE run_id = ? AND mapping_fingerprint IS NOT NULL
             GROUP BY mapping_fingerprint ORDER BY min(id)",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records the mapping (file name and digest, '' for none) a source is ingested with.
    pub async fn set_source_mapping(
        &self,
        source_id: i64,
        name: &str,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE source_files SET mapping_name = ?, mapping_fingerprint = ? WHERE id = ?",
        )
        .bind(name)
        .bind(fingerprint)
        .bind(source_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn begin_source(
        &self,
        run_id: i64,
        path: &str,
        content_hash: &str,
        settings_hash: &str,
        format: &str,
    ) -> Result<SourceStart, StoreError> {
        let existing: Option<(i64, i64, i64, i64, i64, bool)> = sqlx::query_as(
            "SELECT id, last_line, rows_read, rows_valid, rows_invalid, complete
             FROM source_files WHERE run_id = ? AND content_hash = ? AND settings_hash = ?
             ORDER BY complete DESC, id LIMIT 1",
        )
        .bind(run_id)
        .bind(content_hash)
        .bind(settings_hash)
        .fetch_optional(&self.pool)
        .await?;
        if let Some((source_id, last_line, rows_read, rows_valid, rows_invalid, complete)) =
            existing
        {
            let progress = SourceProgress {
                last_line,
                rows_read,
                rows_valid,
                rows_invalid,
            };
            return Ok(if complete {
                SourceStart::Done {
                    source_id,
                    progress,
                }
            } else {
                SourceStart::Resume {
                    source_id,
                    progress,
                }
            });
        }
        let (source_id,): (i64,) = sqlx::query_as(
            "INSERT INTO source_files (run_id, path, content_hash, settings_hash, format, ingested_at)
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(run_id)
        .bind(path)
        .bind(content_hash)
        .bind(settings_hash)
        .bind(format)
        .bind(now_text())
        .fetch_one(&self.pool)
        .await?;
        Ok(SourceStart::New { source_id })
    }

    /// A writer holding one connection for the rows of one source file.
    pub async fn ingest_writer(
        &self,
        run_id: i64,
        source_id: i64,
    ) -> Result<IngestWriter, StoreError> {
        let conn = self.pool.acquire().await?;
        IngestWriter::open(conn, self.pool.connect_options(), run_id, source_id).await
    }
}

mod writer;

pub use writer::IngestWriter;

#[cfg(test)]
mod tests;

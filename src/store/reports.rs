//! Read-only queries behind `status`, `runs` and the ingest summary.

use serde::Serialize;

use super::{JobState, Run, Store, StoreError};

/// Rows per state. Serialises with every state name as a key, zeros included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: i64,
    pub in_flight: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub invalid: i64,
    pub skipped: i64,
}

impl Counts {
    /// The count for one state.
    pub fn get(&self, state: JobState) -> i64 {
        match state {
            JobState::Pending => self.pending,
            JobState::InFlight => self.in_flight,
            JobState::Succeeded => self.succeeded,
            JobState::Failed => self.failed,
            JobState::Invalid => self.invalid,
            JobState::Skipped => self.skipped,
        }
    }

    fn slot(&mut self, state: JobState) -> &mut i64 {
        match state {
            JobState::Pending => &mut self.pending,
            JobState::InFlight => &mut self.in_flight,
            JobState::Succeeded => &mut self.succeeded,
            JobState::Failed => &mut self.failed,
            JobState::Invalid => &mut self.invalid,
            JobState::Skipped => &mut self.skipped,
        }
    }

    /// All rows.
    pub fn total(&self) -> i64 {
        JobState::ALL.iter().map(|s| self.get(*s)).sum()
    }
}

/// One ingested file of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SourceSummary {
    pub path: String,
    pub format: String,
    pub rows_read: i64,
    pub rows_valid: i64,
    pub rows_invalid: i64,
    pub complete: bool,
    pub ingested_at: String,
}

/// A run with its row counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub run: Run,
    pub counts: Counts,
}

impl Store {
    /// Rows per state in one run.
    pub async fn counts(&self, run_id: i64) -> Result<Counts, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM jobs WHERE run_id = ? GROUP BY state")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?;
        let mut counts = Counts::default();
        for (state, n) in rows {
            if let Some(state) = JobState::parse(&state) {
                *counts.slot(state) += n;
            }
        }
        Ok(counts)
    }

    /// The source files of a run, in ingest order.
    pub async fn sources(&self, run_id: i64) -> Result<Vec<SourceSummary>, StoreError> {
        Ok(sqlx::query_as::<_, SourceSummary>(
            "SELECT path, format, rows_read, rows_valid, rows_invalid, complete, ingested_at
             FROM source_files WHERE run_id = ? ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every run with its counts, oldest first.
    pub async fn run_summaries(&self) -> Result<Vec<RunSummary>, StoreError> {
        let mut out = Vec::new();
        for run in self.all_runs().await? {
            let counts = self.counts(run.id).await?;
            out.push(RunSummary { run, counts });
        }
        Ok(out)
    }
}

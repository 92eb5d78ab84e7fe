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

    /// Adds `n` rows in `state`.
    pub fn add(&mut self, state: JobState, n: i64) {
        *self.slot(state) += n;
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
    /// Rows per state in one run: a few rows of `run_counts`, however long the history.
    pub async fn counts(&self, run_id: i64) -> Result<Counts, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, n FROM run_counts WHERE run_id = ?")
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

    /// Every run with its counts, oldest first: one read of `runs` and `run_counts`.
    pub async fn run_summaries(&self) -> Result<Vec<RunSummary>, StoreError> {
        let rows: Vec<(i64, String, i64)> =
            sqlx::query_as("SELECT run_id, state, n FROM run_counts ORDER BY run_id")
                .fetch_all(&self.pool)
                .await?;
        let mut counts: std::collections::HashMap<i64, Counts> = std::collections::HashMap::new();
        for (run_id, state, n) in rows {
            if let Some(state) = JobState::parse(&state) {
                *counts.entry(run_id).or_default().slot(state) += n;
            }
        }
        Ok(self
            .all_runs()
            .await?
            .into_iter()
            .map(|run| RunSummary {
                counts: counts.get(&run.id).copied().unwrap_or_default(),
                run,
            })
            .collect())
    }

    /// Rows per state counted from the rows themselves, for tests that check `run_counts`.
    #[cfg(test)]
    pub(crate) async fn recount_for_tests(&self, run_id: i64) -> Result<Counts, StoreError> {
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
}

/// When a run's rows last changed, and how many finished in the minute before that.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Activity {
    /// Unix milliseconds of the last change to any row (claim, result, retry), if any.
    pub last_ms: Option<i64>,
    /// Rows that succeeded or failed in the minute up to `last_ms`.
    pub finished_in_last_minute: i64,
    /// When the first of those finished.
    pub first_in_last_minute_ms: Option<i64>,
}

/// One kind of error in a run's attempts log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AttemptError {
    pub class: String,
    pub http_status: Option<i64>,
    /// The start of the body that came back (empty when nothing did).
    pub excerpt: String,
    pub count: i64,
}

/// How far back the recent rate looks, in milliseconds.
const RECENT_MS: i64 = 60_000;

impl Store {
    /// The run's last activity and the rows finished in the minute before it.
    pub async fn activity(&self, run_id: i64) -> Result<Activity, StoreError> {
        let (last_ms,): (Option<i64>,) =
            sqlx::query_as("SELECT max(updated_at) FROM jobs WHERE run_id = ?")
                .bind(run_id)
                .fetch_one(&self.pool)
                .await?;
        let Some(last) = last_ms else {
            return Ok(Activity::default());
        };
        let (finished, first): (i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*), min(updated_at) FROM jobs
             WHERE run_id = ?1 AND state IN ('succeeded', 'failed') AND updated_at >= ?2",
        )
        .bind(run_id)
        .bind(last - RECENT_MS)
        .fetch_one(&self.pool)
        .await?;
        Ok(Activity {
            last_ms,
            finished_in_last_minute: finished,
            first_in_last_minute_ms: first,
        })
    }

    /// The most frequent kinds of failed attempt in a run (class, status and body), most
    /// frequent first.
    pub async fn top_attempt_errors(
        &self,
        run_id: i64,
        limit: i64,
    ) -> Result<Vec<AttemptError>, StoreError> {
        Ok(sqlx::query_as::<_, AttemptError>(
            "SELECT a.class, a.http_status, coalesce(a.excerpt, '') AS excerpt, count(*) AS count
             FROM jobs j JOIN attempts a ON a.job_id = j.id
             WHERE j.run_id = ?1 AND a.class <> 'success'
             GROUP BY a.class, a.http_status, coalesce(a.excerpt, '')
             ORDER BY count DESC, a.class LIMIT ?2",
        )
        .bind(run_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// One job as `export` and the tests see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub source: String,
    pub line: i64,
    pub ticket_id: Option<String>,
    pub payload: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub http_status: Option<i64>,
    pub replayed: bool,
    /// The source record of an invalid row, as read.
    pub raw_record: Option<String>,
}

impl Store {
    /// A page of a run's jobs in id order after `after_id`, optionally of one state. Paging
    /// by id keeps memory flat and holds no read transaction open between pages.
    ///
    /// `jobs_by_run` holds the run's rows in id order, so a page is one seek and no sort, and
    /// other runs' rows are never read.
    pub async fn job_rows(
        &self,
        run_id: i64,
        state: Option<JobState>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        self.job_rows_matching(run_id, state, None, after_id, limit)
            .await
    }

    /// [`Store::job_rows`] keeping only rows whose `error_message` (an invalid row's reason)
    /// contains `grep` literally (`%` and `_` are not wildcards), as `retry --grep` does.
    pub async fn job_rows_matching(
        &self,
        run_id: i64,
        state: Option<JobState>,
        grep: Option<&str>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        Ok(sqlx::query_as::<_, JobRow>(
            "SELECT j.id, s.path AS source, j.line, j.ticket_id, j.payload, j.state, j.attempts,
                    j.error_class, j.error_message, j.http_status, j.replayed, j.raw_record
             FROM jobs j INDEXED BY jobs_by_run JOIN source_files s ON s.id = j.source_id
             WHERE j.run_id = ?1 AND j.id > ?2 AND (?3 IS NULL OR j.state = ?3)
               AND (?5 IS NULL OR instr(j.error_message, ?5) > 0)
             ORDER BY j.id LIMIT ?4",
        )
        .bind(run_id)
        .bind(after_id)
        .bind(state.map(JobState::as_str))
        .bind(limit)
        .bind(grep)
        .fetch_all(&self.pool)
        .await?)
    }
}

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
    /// Unix milliseconds of the last result a drain recorded for the run (a row finished, a
    /// retry scheduled, a row put back), if any.
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

impl Store {
    /// The run's last activity and the rows finished in the minute before it, from the last
    /// minute of the run's `run_pace` (at most 61 rows, whatever the run's size).
    pub async fn activity(&self, run_id: i64) -> Result<Activity, StoreError> {
        let (last_ms, finished, first): (Option<i64>, i64, Option<i64>) = sqlx::query_as(PACE_SQL)
            .bind(run_id)
            .fetch_one(&self.pool)
            .await?;
        if last_ms.is_none() {
            return Ok(Activity::default());
        }
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
        Ok(sqlx::query_as::<_, AttemptError>(TOP_ERRORS_SQL)
            .bind(run_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }
}

/// A run's pace: the table keeps only each run's last minute (see migration 0009).
const PACE_SQL: &str = "SELECT max(last_change), coalesce(sum(finished), 0), min(first_finished)
     FROM run_pace WHERE run_id = ?1";

/// A run's failed attempts grouped: the entries of `attempts_failed` (no successes) between
/// the run's first and last row id, each checked against its row's run (runs ingested at the
/// same time interleave ids). CROSS JOIN keeps that order: left to itself SQLite walked the
/// run's rows (`jobs_by_run`) and probed each one's attempts.
const TOP_ERRORS_SQL: &str =
    "SELECT a.class, a.http_status, coalesce(a.excerpt, '') AS excerpt, count(*) AS count
     FROM attempts a INDEXED BY attempts_failed CROSS JOIN jobs j ON j.id = a.job_id
     WHERE a.class <> 'success'
       AND a.job_id BETWEEN
           (SELECT id FROM jobs INDEXED BY jobs_by_run WHERE run_id = ?1 ORDER BY id LIMIT 1)
       AND (SELECT id FROM jobs INDEXED BY jobs_by_run WHERE run_id = ?1 ORDER BY id DESC LIMIT 1)
       AND j.run_id = ?1
     GROUP BY a.class, a.http_status, coalesce(a.excerpt, '')
     ORDER BY count DESC, a.class LIMIT ?2";

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
    /// What Kapture's success answer confirmed, as stored: the fields that differ from the
    /// payload (see `kapture::confirmed`), or the whole snapshot with `--keep-responses`.
    pub response: Option<String>,
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
                    j.error_class, j.error_message, j.http_status, j.replayed, j.raw_record,
                    j.response
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

#[cfg(test)]
mod tests {
    use super::{PACE_SQL, TOP_ERRORS_SQL};
    use crate::store::fixtures::{add_run, store_with};
    use crate::store::{AttemptRecord, Cursor, Next, Outcome, Store};

    async fn plan(store: &Store, sql: &str) -> String {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .bind(1)
                .bind(5)
                .fetch_all(&store.pool)
                .await
                .unwrap();
        rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
    }

    #[tokio::test]
    async fn status_reads_the_pace_and_the_failed_attempts_not_the_runs_rows() {
        let (_dir, store, _) = store_with(&["1", "2"]).await;
        let pace = plan(&store, PACE_SQL).await;
        assert!(
            pace.contains("SEARCH run_pace USING PRIMARY KEY (run_id=?)"),
            "{pace}"
        );
        let errors = plan(&store, TOP_ERRORS_SQL).await;
        assert!(
            errors
                .contains("SEARCH a USING COVERING INDEX attempts_failed (job_id>? AND job_id<?)"),
            "{errors}"
        );
        // Each attempt's row is one probe, by its id.
        assert!(
            errors
                .lines()
                .any(|l| l.contains("SEARCH j ") && l.contains("rowid=?)")),
            "{errors}"
        );
        // Only the GROUP BY and ORDER BY sort; nothing is walked whole.
        let scans: Vec<&str> = pace
            .lines()
            .chain(errors.lines())
            .filter(|l| l.contains("SCAN"))
            .collect();
        assert!(scans.is_empty(), "{pace}\n{errors}");
    }

    #[tokio::test]
    async fn a_successful_attempt_enters_only_the_reports_index() {
        let (_dir, store, _) = store_with(&["1"]).await;
        let indexes: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'attempts'
             ORDER BY name",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        let names: Vec<&str> = indexes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["attempts_by_time", "attempts_failed"]);
        let failed = indexes[1].1.as_deref().unwrap_or_default();
        assert!(failed.contains("WHERE class <> 'success'"), "{failed}");
    }

    fn outcome(job_id: i64, class: &'static str, next: Next) -> Outcome {
        Outcome {
            job_id,
            http_status: Some(200),
            next,
            attempt: Some(AttemptRecord {
                attempt: 1,
                started_ms: 1,
                duration_ms: 5,
                http_status: Some(200),
                class,
                in_doubt: false,
                excerpt: if class == "success" {
                    String::new()
                } else {
                    format!("{{\"message\":\"{class} {job_id}\"}}")
                },
            }),
        }
    }

    #[tokio::test]
    async fn pace_and_errors_count_only_the_runs_own_results() {
        let (_dir, store, run) = store_with(&["1", "2", "3"]).await;
        let other = add_run(&store, "other", &["4", "5"]).await;
        assert_eq!(store.activity(run).await.unwrap(), Default::default());
        for (run_id, rows) in [(run, 3), (other, 2)] {
            let claimed = store
                .claim(run_id, &mut Cursor::default(), 10, 1, 1)
                .await
                .unwrap();
            assert_eq!(claimed.len(), rows);
        }
        let ok = || Next::Succeeded { response: None };
        let failed = |m: &str| Next::Failed {
            class: "rejected".into(),
            message: m.into(),
        };
        let retry = Next::Retry {
            at_ms: i64::MAX,
            class: "transient".into(),
            message: "503".into(),
        };
        store
            .record_outcomes(&[
                outcome(1, "success", ok()),
                outcome(2, "rejected", failed("bad")),
                outcome(3, "transient", retry),
                outcome(4, "rejected", failed("bad")),
                outcome(5, "success", ok()),
            ])
            .await
            .unwrap();
        let activity = store.activity(run).await.unwrap();
        assert_eq!(
            activity.finished_in_last_minute, 2,
            "1 and 2, not the retry"
        );
        assert!(activity.last_ms.is_some() && activity.first_in_last_minute_ms.is_some());
        assert_eq!(
            store.activity(other).await.unwrap().finished_in_last_minute,
            2
        );
        let errors = store.top_attempt_errors(run, 5).await.unwrap();
        let mut seen: Vec<(String, String)> =
            errors.into_iter().map(|e| (e.class, e.excerpt)).collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("rejected".into(), r#"{"message":"rejected 2"}"#.into()),
                ("transient".into(), r#"{"message":"transient 3"}"#.into())
            ],
            "run 1's failed attempts only: not its success, not the other run's"
        );
    }
}

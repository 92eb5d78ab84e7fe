//! Putting failed rows back to `pending` for `kapsync retry`, their attempt history kept.

use super::{Store, StoreError, now_ms};

/// Every `error_class` a row can carry: the engine's classes for an answer that was not a
/// success, plus `invalid` for rows ingest could not use. `retry --class` accepts these.
pub const ERROR_CLASSES: [&str; 7] = [
    "rejected",
    "transient",
    "transient_in_doubt",
    "auth",
    "forbidden",
    "throttled",
    "invalid",
];

impl Store {
    /// Puts the run's `failed` rows back to `pending`, due at once, with their attempt count
    /// and last error cleared; returns how many rows changed.
    ///
    /// `class` keeps only rows whose `error_class` equals it; `grep` only rows whose
    /// `error_message` contains it literally (`%` and `_` are not wildcards). The `attempts`
    /// table is left alone, so the history of every earlier try stays readable.
    ///
    /// `next_attempt_at` is set to 0 rather than NULL: a pending row behind the dispatcher's
    /// cursor is only found through the `jobs_waiting` partial index, which holds rows with
    /// a non-NULL `next_attempt_at`.
    pub async fn requeue_failed(
        &self,
        run_id: i64,
        class: Option<&str>,
        grep: Option<&str>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs
             SET state = 'pending', attempts = 0, next_attempt_at = 0,
                 error_class = NULL, error_message = NULL, http_status = NULL, updated_at = ?1
             WHERE run_id = ?2 AND state = 'failed'
               AND (?3 IS NULL OR error_class = ?3)
               AND (?4 IS NULL OR instr(error_message, ?4) > 0)",
        )
        .bind(now_ms())
        .bind(run_id)
        .bind(class)
        .bind(grep)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// How many attempts the history holds for one job.
    pub async fn attempt_count(&self, job_id: i64) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM attempts WHERE job_id = ?")
            .bind(job_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Test support: fails a job as the engine would after a final attempt, and appends
    /// that attempt to the history. Not for production code, which goes through the engine.
    #[doc(hidden)]
    pub async fn mark_failed_for_tests(
        &self,
        job_id: i64,
        class: &str,
        message: &str,
        http_status: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let (attempt,): (i64,) = sqlx::query_as(
            "UPDATE jobs
             SET state = 'failed', attempts = attempts + 1, next_attempt_at = NULL,
                 error_class = ?2, error_message = ?3, http_status = ?4, updated_at = ?5
             WHERE id = ?1 RETURNING attempts",
        )
        .bind(job_id)
        .bind(class)
        .bind(message)
        .bind(http_status)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO attempts (job_id, attempt, started_at, duration_ms, http_status, class,
                                   excerpt)
             VALUES (?, ?, ?, 0, ?, ?, ?)",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(now_ms())
        .bind(http_status)
        .bind(class)
        .bind(message)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{JobState, NewJob, SourceProgress, SourceStart};

    /// A store with one run of `n` valid rows (tickets 1..=n); returns it and the run id.
    async fn store_with_rows(dir: &tempfile::TempDir, n: i64) -> (Store, i64) {
        let store = Store::open(&dir.path().join("k.db")).await.unwrap();
        let (run, _) = store.get_or_create_run("r").await.unwrap();
        let SourceStart::New { source_id } = store
            .begin_source(run.id, "in.csv", "hash", "settings", "csv")
            .await
            .unwrap()
        else {
            panic!("a new source");
        };
        let jobs: Vec<NewJob> = (1..=n)
            .map(|i| NewJob {
                line: i + 1,
                ticket_id: Some(i.to_string()),
                payload: Some(format!(r#"{{"ticket_id":"{i}","sub_status":"CL"}}"#)),
                payload_hash: Some([0; 16]),
                invalid_reason: None,
                sync_key: None,
            })
            .collect();
        let mut writer = store.ingest_writer(run.id, source_id).await.unwrap();
        writer.write(&jobs).await.unwrap();
        writer
            .finish(
                SourceProgress {
                    last_line: n + 1,
                    rows_read: n,
                    rows_valid: n,
                    rows_invalid: 0,
                },
                "hash",
            )
            .await
            .unwrap();
        (store, run.id)
    }

    #[tokio::test]
    async fn requeue_filters_by_class_and_literal_text_and_keeps_history() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run_id) = store_with_rows(&dir, 4).await;
        let ids: Vec<i64> = store
            .job_rows(run_id, None, 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        store
            .mark_failed_for_tests(ids[0], "rejected", "Invalid Format 100%", Some(200))
            .await
            .unwrap();
        store
            .mark_failed_for_tests(ids[1], "rejected", "Invalid Format 1000", Some(200))
            .await
            .unwrap();
        store
            .mark_failed_for_tests(ids[2], "transient", "HTTP 503 100%", Some(503))
            .await
            .unwrap();

        // `%` is literal: only the row whose message really holds "100%" and is rejected.
        let n = store
            .requeue_failed(run_id, Some("rejected"), Some("100%"))
            .await
            .unwrap();
        assert_eq!(n, 1);
        let rows = store.job_rows(run_id, None, 0, 10).await.unwrap();
        assert_eq!(rows[0].state, "pending");
        assert_eq!(rows[0].attempts, 0);
        assert_eq!(rows[0].error_class, None);
        assert_eq!(rows[0].error_message, None);
        assert_eq!(rows[0].http_status, None);
        assert_eq!(rows[1].state, "failed");
        assert_eq!(rows[2].state, "failed");
        assert_eq!(store.attempt_count(ids[0]).await.unwrap(), 1);

        let (due,): (Option<i64>,) =
            sqlx::query_as("SELECT next_attempt_at FROM jobs WHERE id = ?")
                .bind(ids[0])
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(
            due,
            Some(0),
            "the row must be visible to the jobs_waiting index"
        );

        // Without filters every remaining failed row goes back; pending rows are untouched.
        assert_eq!(store.requeue_failed(run_id, None, None).await.unwrap(), 2);
        let counts = store.counts(run_id).await.unwrap();
        assert_eq!(counts.get(JobState::Pending), 4);
        assert_eq!(store.requeue_failed(run_id, None, None).await.unwrap(), 0);
    }
}

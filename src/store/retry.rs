//! Putting failed rows back to `pending` for `kapsync retry` (never behind a later row of
//! their ticket) and skipping rows for `kapsync skip` (resolved failures: `history.rs`).

use super::{Store, StoreError, now_ms};

/// "A later row of this failed row's ticket succeeded or is on its way": retrying it would
/// apply an older update over a newer one. Succeeded rows are found by sync key, open rows by
/// ticket (any later pending or in-flight row of the ticket, among the rows that were to be
/// sent): both among the ticket's later entries of `jobs_by_ticket_sent`.
const SUPERSEDED: &str = "(EXISTS (SELECT 1 FROM jobs l INDEXED BY jobs_by_ticket_sent
         WHERE l.ticket_id = jobs.ticket_id AND l.sync_key = jobs.sync_key
         AND l.id > jobs.id AND l.state IN ('succeeded', 'pending', 'in_flight'))
     OR EXISTS (SELECT 1 FROM jobs l INDEXED BY jobs_by_ticket_sent
         WHERE l.ticket_id = jobs.ticket_id AND l.payload IS NOT NULL
         AND l.id > jobs.id AND l.state IN ('pending', 'in_flight')))";

// The three `state <> ...` terms next to `state = 'failed'` below are what let SQLite use the
// partial index `jobs_settled` (migration 0010) to reach a run's failed rows without walking
// its other rows.

/// Which rows of a run `retry` and `skip` act on.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowFilter<'a> {
    /// Only rows whose `error_class` equals this.
    pub class: Option<&'a str>,
    /// Only rows whose `error_message` contains this literally.
    pub grep: Option<&'a str>,
}

/// What `retry` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Requeued {
    /// Rows put back to pending.
    pub requeued: u64,
    /// Matching failed rows left failed: a later row of their ticket succeeded or is on its way.
    pub superseded: u64,
}

/// Every `error_class` a `failed` row can carry, so the values `retry --class` accepts: a
/// rejection, or a transient error on the last attempt. (Auth, forbidden and throttled answers
/// put the row back to pending; invalid rows have no error class.)
pub const ERROR_CLASSES: [&str; 3] = ["rejected", "transient", "transient_in_doubt"];

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
    ///
    /// Unless `include_superseded`, a failed row whose ticket has a later row that succeeded
    /// or is pending or in flight stays failed (counted in [`Requeued::superseded`]).
    pub async fn requeue_failed(
        &self,
        run_id: i64,
        filter: RowFilter<'_>,
        include_superseded: bool,
    ) -> Result<Requeued, StoreError> {
        let mut tx = self.pool.begin().await?;
        let superseded = if include_superseded {
            0
        } else {
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM jobs
                 WHERE run_id = ?1 AND state = 'failed' AND state <> 'pending'
                   AND state <> 'in_flight' AND state <> 'succeeded'
                   AND (?2 IS NULL OR error_class = ?2)
                   AND (?3 IS NULL OR instr(error_message, ?3) > 0) AND {SUPERSEDED}"
            )))
            .bind(run_id)
            .bind(filter.class)
            .bind(filter.grep)
            .fetch_one(&mut *tx)
            .await?;
            n as u64
        };
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs
             SET state = 'pending', attempts = 0, next_attempt_at = 0,
                 error_class = NULL, error_message = NULL, http_status = NULL, updated_at = ?1
             WHERE run_id = ?2 AND state = 'failed' AND state <> 'pending'
               AND state <> 'in_flight' AND state <> 'succeeded'
               AND (?3 IS NULL OR error_class = ?3)
               AND (?4 IS NULL OR instr(error_message, ?4) > 0)
               AND (?5 OR NOT {SUPERSEDED})"
        )))
        .bind(now_ms())
        .bind(run_id)
        .bind(filter.class)
        .bind(filter.grep)
        .bind(include_superseded)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Requeued {
            requeued: done.rows_affected(),
            superseded,
        })
    }

    /// Marks the run's failed and pending rows matching `filter` `skipped`, with `reason`
    /// (a person decided not to send them); returns how many changed.
    pub async fn skip_rows(
        &self,
        run_id: i64,
        filter: RowFilter<'_>,
        reason: &str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs
             SET state = 'skipped', next_attempt_at = NULL, error_class = 'manual',
                 error_message = ?1, updated_at = ?2
             WHERE run_id = ?3 AND state IN ('failed', 'pending')
               AND (?4 IS NULL OR error_class = ?4)
               AND (?5 IS NULL OR instr(error_message, ?5) > 0)",
        )
        .bind(reason)
        .bind(now_ms())
        .bind(run_id)
        .bind(filter.class)
        .bind(filter.grep)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Puts the given `failed` rows of a run back to `pending`, due at once and uncharged (a
    /// canary halt: they were not bad rows, a mapping was), their last error kept for
    /// `status`; returns how many rows changed. `ids` go in as one JSON array.
    pub async fn requeue_rejected(&self, run_id: i64, ids: &[i64]) -> Result<u64, StoreError> {
        let ids = serde_json::to_string(ids).map_err(|e| {
            StoreError::Query(sqlx::Error::Protocol(format!("failed to list rows: {e}")))
        })?;
        let done = sqlx::query(
            "UPDATE jobs
             SET state = 'pending', attempts = max(attempts - 1, 0), next_attempt_at = 0,
                 updated_at = ?1
             WHERE run_id = ?2 AND state = 'failed'
               AND id IN (SELECT value FROM json_each(?3))",
        )
        .bind(now_ms())
        .bind(run_id)
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// How many attempts the history holds for one job. For tests: it reads every attempt (no
    /// index leads with the job since migration 0009).
    pub async fn attempt_count(&self, job_id: i64) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM attempts WHERE job_id = ?")
            .bind(job_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Test support: fails a job as the engine would after a final attempt, and appends
    /// that attempt to the history. Only in tests and with the `test-support` feature:
    /// production code goes through the engine.
    #[cfg(any(test, feature = "test-support"))]
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
    use super::{Requeued, RowFilter};
    use crate::store::JobState;
    use crate::store::fixtures::store_with;

    #[tokio::test]
    async fn requeue_filters_by_class_and_literal_text_and_keeps_history() {
        let (_dir, store, run_id) = store_with(&["1", "2", "3", "4"]).await;
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
        let filter = RowFilter {
            class: Some("rejected"),
            grep: Some("100%"),
        };
        let n = store.requeue_failed(run_id, filter, false).await.unwrap();
        assert_eq!(n.requeued, 1);
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
        let all = RowFilter::default();
        assert_eq!(
            store
                .requeue_failed(run_id, all, false)
                .await
                .unwrap()
                .requeued,
            2
        );
        let counts = store.counts(run_id).await.unwrap();
        assert_eq!(counts.get(JobState::Pending), 4);
        assert_eq!(
            store.requeue_failed(run_id, all, false).await.unwrap(),
            Requeued::default()
        );
    }

    /// The plan of `sql` with its parameters unbound (the database keeps no statistics, as
    /// in use: kapsync never runs ANALYZE).
    async fn plan(store: &crate::store::Store, sql: &str) -> String {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&store.pool)
                .await
                .unwrap();
        rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
    }

    #[tokio::test]
    async fn retry_and_sync_key_checks_use_their_indexes() {
        let (_dir, store, _) = store_with(&["1", "2", "1"]).await;
        // Retry's check: the run's failed rows through jobs_settled, then per row one probe
        // by sync key and one by ticket among the open rows, both among the ticket's entries.
        let retry = plan(
            &store,
            &format!(
                "SELECT count(*) FROM jobs WHERE run_id = ?1 AND state = 'failed'
                 AND state <> 'pending' AND state <> 'in_flight' AND state <> 'succeeded'
                 AND {}",
                super::SUPERSEDED
            ),
        )
        .await;
        assert!(
            retry.contains("USING INDEX jobs_settled (run_id=? AND state=?)"),
            "{retry}"
        );
        assert!(
            retry.contains("USING INDEX jobs_by_ticket_sent (ticket_id=? AND id>?)"),
            "{retry}"
        );
        assert!(
            retry.contains("USING INDEX jobs_by_ticket_sent (ticket_id=?"),
            "{retry}"
        );
        assert!(!retry.contains("SCAN"), "{retry}");
        // Ingest's sync-key lookups (store/delta.rs): one probe per key, from the newest row;
        // an event key (and a failed row after it) one descent of its own index.
        let probe = plan(&store, &crate::store::delta::probe::PROBES[0][1][0]).await;
        assert!(
            probe.contains("USING INDEX jobs_by_ticket_sent (ticket_id=?)"),
            "{probe}"
        );
        let event = plan(&store, &crate::store::delta::probe::PROBES[1][1][0]).await;
        assert!(
            event.contains("USING INDEX jobs_by_event_key (sync_key=?)"),
            "{event}"
        );
        assert!(
            event.contains("USING INDEX jobs_by_event_key (sync_key=? AND id>?)"),
            "{event}"
        );
        assert!(!event.contains("jobs_by_ticket_sent"), "{event}");
        let supersede = plan(&store, &crate::store::delta::SUPERSEDE_SQL).await;
        assert!(
            supersede.contains("USING INDEX jobs_by_ticket_sent (ticket_id=? AND id<?)"),
            "{supersede}"
        );
    }
}

//! A run's failed rows split into open ones and ones resolved by a later row of their sync key.
//!
//! One definition of "resolved", shared by `status`, `run`'s exit code and `report`: a later
//! row (higher id, in any run of the database) of the same sync key succeeded, or was found
//! unchanged since what was sent. The default sync key is the ticket id; a `[delta] key`
//! mapping makes it the mapped columns, so a later success of the same ticket under another
//! key (another comment, say) resolves nothing.

use serde::Serialize;

use super::settings::RunSet;
use super::{Store, StoreError};

/// "A later row of this failed row's sync key succeeded, or was found unchanged since what
/// was sent": the failure needs nothing more. The failed row is the outer `jobs`; one probe of
/// `jobs_by_ticket_sent` per failed row (a sync key is one ticket's: the ticket's later entries,
/// the key compared in the entry).
pub(super) const RESOLVED: &str = "EXISTS (SELECT 1 FROM jobs l INDEXED BY jobs_by_ticket_sent
         WHERE l.ticket_id = jobs.ticket_id AND l.sync_key = jobs.sync_key AND l.id > jobs.id
         AND (l.state = 'succeeded' OR (l.state = 'skipped' AND l.error_class = 'unchanged')))";

/// Failed rows of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Failures {
    pub run_id: i64,
    /// Failed rows no later row of their sync key has made good: these make a run exit 1.
    pub open: i64,
    /// Failed rows a later row of the same sync key has since made good.
    pub resolved: i64,
}

/// The query behind [`Store::failures`]: the failed rows through `jobs_settled` (the three
/// `state <> ...` terms beside `state = 'failed'` are what let SQLite pick that partial
/// index, migration 0010), each probed with [`RESOLVED`].
fn failures_sql() -> String {
    format!(
        "SELECT run_id, count(*) - sum(resolved) AS open, sum(resolved) AS resolved
         FROM (SELECT jobs.run_id, {RESOLVED} AS resolved
               FROM jobs
               WHERE jobs.run_id IN (SELECT value FROM json_each(?1))
                 AND jobs.state = 'failed' AND jobs.state <> 'pending'
                 AND jobs.state <> 'in_flight' AND jobs.state <> 'succeeded')
         GROUP BY run_id ORDER BY run_id"
    )
}

impl Store {
    /// Open and resolved failures per run, for the runs in `runs` that have failed rows.
    ///
    /// Walks only the failed rows (`jobs_settled`) and probes the later rows of each one's
    /// sync key (`jobs_by_ticket_sent`), so the cost follows the failed rows, not the database.
    pub async fn failures(&self, runs: &RunSet) -> Result<Vec<Failures>, StoreError> {
        Ok(
            sqlx::query_as::<_, Failures>(sqlx::AssertSqlSafe(failures_sql()))
                .bind(runs.as_json())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// How many of the run's failed rows are resolved (see [`Store::failures`]). They do not
    /// make a run exit 1.
    pub async fn resolved_failures(&self, run_id: i64) -> Result<i64, StoreError> {
        let failures = self.failures(&RunSet::new([run_id])).await?;
        Ok(failures.first().map_or(0, |f| f.resolved))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::fixtures::store_with;

    #[tokio::test]
    async fn failures_walk_the_failed_rows_and_probe_by_sync_key() {
        let (_dir, store, _) = store_with(&["1", "2", "1"]).await;
        let sql = format!("EXPLAIN QUERY PLAN {}", super::failures_sql());
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let plan = rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n");
        assert!(
            plan.contains("USING INDEX jobs_settled (run_id=? AND state=?)"),
            "{plan}"
        );
        assert!(
            plan.contains("USING INDEX jobs_by_ticket_sent (ticket_id=? AND id>?)"),
            "{plan}"
        );
        // The only scan is of the JSON array of run ids; no table or index is walked whole.
        let scans: Vec<&str> = plan
            .lines()
            .filter(|l| l.contains("SCAN") && !l.contains("SCAN json_each"))
            .collect();
        assert!(scans.is_empty(), "{plan}");
    }
}

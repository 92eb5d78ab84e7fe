//! A run's failed rows split into open ones and ones resolved by a later row of the ticket.
//!
//! A failed row is resolved once a later row (higher id, in any run of the database) of the
//! same ticket succeeded: the default sync key is the ticket id. Kept on its own so `status`
//! and `report` can share one definition.

use serde::Serialize;

use super::settings::RunSet;
use super::{Store, StoreError};

/// Failed rows of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Failures {
    pub run_id: i64,
    /// Failed rows with no later success of their ticket: these make a run exit 1.
    pub open: i64,
    /// Failed rows a later row of the same ticket has since made good.
    pub resolved: i64,
}

impl Store {
    /// Open and resolved failures per run, for the runs in `runs` that have failed rows.
    ///
    /// Walks only the failed rows (`jobs_settled`), and for each one looks up later rows of
    /// its ticket through `jobs_by_ticket` once per run of the database (`run_id IN runs`),
    /// since that index leads with the run.
    pub async fn failures(&self, runs: &RunSet) -> Result<Vec<Failures>, StoreError> {
        Ok(sqlx::query_as::<_, Failures>(
            "SELECT run_id, count(*) - sum(resolved) AS open, sum(resolved) AS resolved
             FROM (SELECT f.run_id, EXISTS (
                          SELECT 1 FROM jobs l
                          WHERE l.run_id IN (SELECT id FROM runs) AND l.ticket_id = f.ticket_id
                            AND l.id > f.id AND l.state = 'succeeded') AS resolved
                   FROM jobs f
                   WHERE f.run_id IN (SELECT value FROM json_each(?1))
                     AND f.state = 'failed' AND f.state <> 'pending')
             GROUP BY run_id ORDER BY run_id",
        )
        .bind(runs.as_json())
        .fetch_all(&self.pool)
        .await?)
    }
}

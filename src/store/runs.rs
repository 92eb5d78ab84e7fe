//! Runs: creating, finding and listing them.

use serde::Serialize;

use super::{Store, StoreError, now_text};

/// A batch of work: the rows of one or more ingested files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Run {
    pub id: i64,
    pub name: String,
    pub created_at: String,
}

impl Store {
    /// Returns the run named `name`, creating it when missing; the flag says whether it was
    /// created.
    pub async fn get_or_create_run(&self, name: &str) -> Result<(Run, bool), StoreError> {
        if let Some(run) = self.find_run(name).await? {
            return Ok((run, false));
        }
        let run = sqlx::query_as::<_, Run>(
            "INSERT INTO runs (name, created_at) VALUES (?, ?)
             ON CONFLICT (name) DO UPDATE SET name = excluded.name
             RETURNING id, name, created_at",
        )
        .bind(name)
        .bind(now_text())
        .fetch_one(&self.pool)
        .await?;
        Ok((run, true))
    }

    /// Creates a run named after the current time (`2026-11-28T09:30:12Z`, with a suffix when
    /// that name is taken).
    pub async fn create_timed_run(&self) -> Result<Run, StoreError> {
        let base = now_text();
        for n in 1.. {
            let name = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let created = sqlx::query_as::<_, Run>(
                "INSERT INTO runs (name, created_at) VALUES (?, ?)
                 ON CONFLICT (name) DO NOTHING RETURNING id, name, created_at",
            )
            .bind(&name)
            .bind(&base)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(run) = created {
                return Ok(run);
            }
        }
        unreachable!("an unbounded range always yields")
    }

    /// The run named `name`, if any.
    pub async fn find_run(&self, name: &str) -> Result<Option<Run>, StoreError> {
        Ok(
            sqlx::query_as::<_, Run>("SELECT id, name, created_at FROM runs WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The named run, or the latest one when no name is given.
    pub async fn resolve_run(&self, name: Option<&str>) -> Result<Run, StoreError> {
        match name {
            Some(name) => self
                .find_run(name)
                .await?
                .ok_or_else(|| StoreError::NoSuchRun(name.to_owned())),
            None => sqlx::query_as::<_, Run>(
                "SELECT id, name, created_at FROM runs ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NoRuns),
        }
    }

    /// Every run, oldest first.
    pub async fn all_runs(&self) -> Result<Vec<Run>, StoreError> {
        Ok(
            sqlx::query_as::<_, Run>("SELECT id, name, created_at FROM runs ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Removes a run that holds no file and no row (one an ingest created and then failed
    /// before storing anything). Returns whether it was removed.
    pub async fn discard_empty_run(&self, run_id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM runs WHERE id = ?1
               AND NOT EXISTS (SELECT 1 FROM source_files WHERE run_id = ?1)
               AND NOT EXISTS (SELECT 1 FROM jobs WHERE run_id = ?1)",
        )
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            sqlx::query("DELETE FROM run_counts WHERE run_id = ?")
                .bind(run_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(done.rows_affected() > 0)
    }

    /// The runs holding rows that are pending or in flight, oldest open row first: the order
    /// in which their rows are to be sent. Reads `run_counts` and two index probes a run.
    pub async fn open_runs(&self) -> Result<Vec<Run>, StoreError> {
        Ok(sqlx::query_as::<_, Run>(
            "SELECT r.id, r.name, r.created_at FROM runs r
             WHERE r.id IN (SELECT run_id FROM run_counts
                            WHERE state IN ('pending', 'in_flight') AND n > 0)
             ORDER BY min(
                 coalesce((SELECT min(id) FROM jobs INDEXED BY jobs_open_by_run
                           WHERE run_id = r.id AND state IN ('pending', 'in_flight')
                             AND state = 'pending'), 9223372036854775807),
                 coalesce((SELECT min(id) FROM jobs INDEXED BY jobs_open_by_run
                           WHERE run_id = r.id AND state IN ('pending', 'in_flight')
                             AND state = 'in_flight'), 9223372036854775807)),
               r.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The other runs holding open rows that open rows of `run_id` wait on (the row before it
    /// in its ticket, pending or in flight; see `store/claim.rs`), with how many of the run's
    /// rows wait on each, oldest run first. One probe per open row of the run.
    pub async fn runs_holding_earlier_rows(
        &self,
        run_id: i64,
    ) -> Result<Vec<(Run, i64)>, StoreError> {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "WITH held(holder) AS (
                 SELECT (SELECT iif(e.state IN ('pending', 'in_flight'), e.run_id, NULL)
                         FROM jobs e INDEXED BY jobs_by_ticket_sent
                         WHERE e.ticket_id = j.ticket_id AND e.payload IS NOT NULL
                           AND e.id < j.id AND e.state <> 'skipped'
                         ORDER BY e.id DESC LIMIT 1)
                 FROM jobs j INDEXED BY jobs_open_by_run
                 WHERE j.run_id = ?1 AND j.state IN ('pending', 'in_flight'))
             SELECT r.id, r.name, r.created_at, count(*) FROM held JOIN runs r ON r.id = held.holder
             WHERE held.holder != ?1
             GROUP BY r.id ORDER BY r.id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, created_at, n)| {
                (
                    Run {
                        id,
                        name,
                        created_at,
                    },
                    n,
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_are_created_found_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("k.db")).await.unwrap();
        assert!(matches!(
            store.resolve_run(None).await,
            Err(StoreError::NoRuns)
        ));
        let (a, created) = store.get_or_create_run("nightly").await.unwrap();
        assert!(created);
        let (again, created) = store.get_or_create_run("nightly").await.unwrap();
        assert!(!created);
        assert_eq!(a, again);
        let t1 = store.create_timed_run().await.unwrap();
        let t2 = store.create_timed_run().await.unwrap();
        assert_ne!(t1.name, t2.name);
        assert_eq!(store.resolve_run(None).await.unwrap(), t2);
        assert_eq!(store.resolve_run(Some("nightly")).await.unwrap(), a);
        assert!(matches!(
            store.resolve_run(Some("nope")).await,
            Err(StoreError::NoSuchRun(_))
        ));
        assert_eq!(store.all_runs().await.unwrap().len(), 3);
    }
}

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
        Ok(done.rows_affected() > 0)
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

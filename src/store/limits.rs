//! The rate limit in force during each drain, as recorded when the adaptive limit changed.

use super::settings::{RunSet, SessionId};
use super::{Store, StoreError};

/// The limit a drain ran under from `at` on.
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct LimitChange {
    /// The drain (`run_settings.id`, [`crate::store::DrainSession::id`]).
    pub drain_id: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// Requests per second; `None`: no limit.
    pub rate: Option<f64>,
}

impl Store {
    /// Records that the drain's limit became `rate` at `at` (Unix ms). A second record at the
    /// same millisecond replaces the first.
    pub async fn record_rate_limit(
        &self,
        drain: SessionId,
        at: i64,
        rate: Option<f64>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT OR REPLACE INTO rate_limits (drain_id, at, rate) VALUES (?, ?, ?)")
            .bind(drain.0)
            .bind(at)
            .bind(rate)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The recorded limit changes of the given runs' drains, by drain and time: the drains
    /// by run (`run_settings_by_run`), then each drain's changes by the primary key.
    pub async fn rate_limits(&self, runs: &RunSet) -> Result<Vec<LimitChange>, StoreError> {
        Ok(sqlx::query_as::<_, LimitChange>(
            "SELECT l.drain_id, l.at, l.rate
             FROM run_settings d JOIN rate_limits l ON l.drain_id = d.id
             WHERE d.run_id IN (SELECT value FROM json_each(?))
             ORDER BY l.drain_id, l.at",
        )
        .bind(runs.as_json())
        .fetch_all(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::LimitChange;
    use crate::store::fixtures::store_with;
    use crate::store::{DrainSettings, RunSet};

    #[tokio::test]
    async fn limit_changes_come_back_by_drain_and_go_with_an_idle_drain() {
        let (_dir, store, run) = store_with(&["1"]).await;
        let settings = DrainSettings {
            target: "http://127.0.0.1:1".into(),
            rate: 20.0,
            burst: 1,
            concurrency: 4,
            max_attempts: 8,
            timeout_secs: 30,
            version: "test".into(),
        };
        let drain = store.drain_started(run, &settings).await.unwrap();
        store
            .record_rate_limit(drain, 2_000, Some(9.5))
            .await
            .unwrap();
        store
            .record_rate_limit(drain, 1_000, Some(10.0))
            .await
            .unwrap();
        store.record_rate_limit(drain, 3_000, None).await.unwrap();
        let sessions = store.drain_sessions(&RunSet::new([run])).await.unwrap();
        let id = sessions[0].id;
        let changes = store.rate_limits(&RunSet::new([run])).await.unwrap();
        let expected =
            [(1_000, Some(10.0)), (2_000, Some(9.5)), (3_000, None)].map(|(at, rate)| {
                LimitChange {
                    drain_id: id,
                    at,
                    rate,
                }
            });
        assert_eq!(changes, expected);
        assert!(
            store
                .rate_limits(&RunSet::new([run + 1]))
                .await
                .unwrap()
                .is_empty()
        );
        // An idle drain is forgotten, its (unlikely) changes with it.
        store.drain_ended(drain, true).await.unwrap();
        assert!(
            store
                .rate_limits(&RunSet::new([run]))
                .await
                .unwrap()
                .is_empty()
        );
    }
}

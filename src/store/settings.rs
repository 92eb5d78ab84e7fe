//! The settings each drain ran with and the mappings a run's files were ingested with.

use serde::Serialize;

use super::{Store, StoreError, now_ms};

/// What a drain of a run was configured with: never the token.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DrainSettings {
    /// The base URL requests went to.
    pub target: String,
    /// Requests per second; 0 means no limit.
    pub rate: f64,
    pub burst: i64,
    pub concurrency: i64,
    pub max_attempts: i64,
    pub timeout_secs: i64,
    /// The kapsync version that ran the drain.
    pub version: String,
}

/// One recorded drain of a run.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DrainSession {
    /// The drain's `run_settings` id, which its [`crate::store::LimitChange`]s name.
    #[serde(skip)]
    pub id: i64,
    pub run_id: i64,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Unix milliseconds; `None` while running, or when the runner died.
    pub finished_at: Option<i64>,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub settings: DrainSettings,
}

/// A mapping file the files of a run were ingested with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct MappingUse {
    pub run_id: i64,
    /// The file name; empty when no mapping file was used.
    pub mapping: String,
    /// The mapping's fingerprint; empty without a mapping file.
    pub digest: String,
    #[serde(skip)]
    pub first: i64,
}

/// A drain being recorded; [`Store::drain_ended`] closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId(pub(super) i64);

#[cfg(test)]
impl SessionId {
    /// A session id for unit tests that never reach the database.
    pub(crate) fn for_tests(id: i64) -> Self {
        SessionId(id)
    }
}

impl Store {
    /// Records that a drain of `run_id` starts now with `settings`.
    pub async fn drain_started(
        &self,
        run_id: i64,
        settings: &DrainSettings,
    ) -> Result<SessionId, StoreError> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO run_settings (run_id, started_at, target, rate, burst, concurrency,
                                       max_attempts, timeout_secs, version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(run_id)
        .bind(now_ms())
        .bind(&settings.target)
        .bind(settings.rate)
        .bind(settings.burst)
        .bind(settings.concurrency)
        .bind(settings.max_attempts)
        .bind(settings.timeout_secs)
        .bind(&settings.version)
        .fetch_one(&self.pool)
        .await?;
        Ok(SessionId(id))
    }

    /// Records that the drain ended now; a drain that had nothing to do is forgotten, so a
    /// nightly `run` over every run does not record the idle ones.
    pub async fn drain_ended(&self, session: SessionId, idle: bool) -> Result<(), StoreError> {
        let sql = if idle {
            "DELETE FROM run_settings WHERE id = ?2"
        } else {
            "UPDATE run_settings SET finished_at = ?1 WHERE id = ?2"
        };
        sqlx::query(sql)
            .bind(now_ms())
            .bind(session.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The recorded drains of the given runs, oldest first.
    pub async fn drain_sessions(&self, runs: &RunSet) -> Result<Vec<DrainSession>, StoreError> {
        Ok(sqlx::query_as::<_, DrainSession>(
            "SELECT id, run_id, started_at, finished_at, target, rate, burst, concurrency,
                    max_attempts, timeout_secs, version
             FROM run_settings WHERE run_id IN (SELECT value FROM json_each(?))
             ORDER BY started_at, id",
        )
        .bind(runs.json())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The mapping files the given runs' files were ingested with (files ingested before
    /// kapsync recorded it are left out).
    pub async fn mappings_used(&self, runs: &RunSet) -> Result<Vec<MappingUse>, StoreError> {
        Ok(sqlx::query_as::<_, MappingUse>(
            "SELECT run_id, mapping_name AS mapping, coalesce(mapping_fingerprint, '') AS digest,
                    min(id) AS first
             FROM source_files
             WHERE run_id IN (SELECT value FROM json_each(?)) AND mapping_name IS NOT NULL
             GROUP BY run_id, mapping_name, mapping_fingerprint ORDER BY run_id, first",
        )
        .bind(runs.json())
        .fetch_all(&self.pool)
        .await?)
    }
}

/// The runs a report covers, passed to SQL as one JSON array so `run_id IN (...)` walks the
/// indexes once per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSet(Vec<i64>);

impl RunSet {
    pub fn new(ids: impl IntoIterator<Item = i64>) -> Self {
        Self(ids.into_iter().collect())
    }

    /// The run ids.
    pub fn ids(&self) -> &[i64] {
        &self.0
    }

    fn json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "[]".into())
    }

    pub(super) fn as_json(&self) -> String {
        self.json()
    }
}

//! The Kapture target a database belongs to: recorded before its first request, moved only on
//! purpose (`--retarget`), every move kept.

use serde::Serialize;
use sqlx::Sqlite;
use sqlx::pool::PoolConnection;

use super::{Store, StoreError, now_text};

/// The target a database sends to, as it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TargetBinding {
    /// `subdomain` or `base_url`.
    pub kind: String,
    /// The subdomain or base URL as given.
    pub value: String,
    /// The resolved base URL: what two targets are compared by.
    pub base_url: String,
    pub recorded_at: String,
    /// Whether this binding moved the database from an earlier target.
    pub retarget: bool,
}

impl Store {
    /// The target in force, if the database has sent anything yet.
    pub async fn target_binding(&self) -> Result<Option<TargetBinding>, StoreError> {
        Ok(sqlx::query_as::<_, TargetBinding>(
            "SELECT kind, value, base_url, recorded_at, retarget != 0 AS retarget
             FROM targets ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records the target. A retarget also marks when the new target's history starts: rows
    /// that succeeded before it went to the old target, and are no longer what unchanged rows
    /// are compared with.
    pub async fn bind_target(
        &self,
        kind: &str,
        value: &str,
        base_url: &str,
        retarget: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO targets (kind, value, base_url, since_ms, retarget, recorded_at)
             VALUES (?1, ?2, ?3, CASE WHEN ?4 THEN ?5 ELSE 0 END, ?4, ?6)",
        )
        .bind(kind)
        .bind(value)
        .bind(base_url)
        .bind(retarget)
        .bind(super::now_ms())
        .bind(now_text())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// When the current target's history starts, in Unix milliseconds (0 when the database never
/// moved).
pub(super) async fn since_ms(conn: &mut PoolConnection<Sqlite>) -> Result<i64, StoreError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT since_ms FROM targets ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut **conn)
            .await?;
    Ok(row.map_or(0, |(id,)| id))
}

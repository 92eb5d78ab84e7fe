//! Claiming rows for sending, in id order and one ticket at a time, and putting orphans back.
//!
//! Fresh rows (never claimed: `next_attempt_at` NULL) are found by walking the primary key from
//! the dispatcher's cursor. Every other pending row (a retry, a row waiting for an earlier row
//! of its ticket, one put back after a crash or by `kapsync retry`) has `next_attempt_at` set
//! and is found through the small `jobs_waiting` index. A fresh row passed by the cursor while
//! an earlier row of its ticket is still pending or in flight is marked waiting (`0`, due at
//! once) in the same transaction, so the cursor never loses a row.

use sqlx::Row;

use super::{Store, StoreError};

/// A row claimed for sending: its state is `in_flight` and its attempt counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    pub run_id: i64,
    pub ticket_id: String,
    pub payload: String,
    /// The attempt number this send is (1 for the first).
    pub attempt: i64,
    /// Whether the row was found in flight after a runner died (it may have been applied).
    pub replayed: bool,
}

/// Where the dispatcher is in a run's fresh rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The highest id the fresh-row walk has passed.
    pub after_id: i64,
    /// Whether the walk reached the end of the run's fresh rows.
    pub exhausted: bool,
}

/// "An earlier row of the same ticket in the same run is pending or in flight."
macro_rules! earlier_row_open {
    () => {
        "EXISTS (SELECT 1 FROM jobs e
          WHERE e.run_id = j.run_id AND e.ticket_id = j.ticket_id AND e.id < j.id
            AND e.state IN ('pending', 'in_flight'))"
    };
}

impl Store {
    /// Puts rows left `in_flight` by a runner that died back to `pending`, due at once and
    /// marked replayed (they may have reached Kapture). Returns how many.
    pub async fn requeue_orphans(&self, run_id: i64, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'pending', next_attempt_at = 0, replayed = 1,
                 attempts = max(attempts - 1, 0), updated_at = ?
             WHERE id IN (SELECT id FROM jobs WHERE run_id = ? AND state = 'in_flight')",
        )
        .bind(now_ms)
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Claims up to `limit` rows of a run: due waiting rows first (they are older), then fresh
    /// rows after the cursor. Rows are returned in id order.
    pub async fn claim(
        &self,
        run_id: i64,
        cursor: &mut Cursor,
        limit: i64,
        now_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut claimed = Vec::new();
        let waiting = sqlx::query(concat!(
            "UPDATE jobs SET state = 'in_flight', attempts = attempts + 1,
                 next_attempt_at = NULL, updated_at = ?1
             WHERE id IN (
                 SELECT j.id FROM jobs j INDEXED BY jobs_waiting
                 WHERE j.run_id = ?2 AND j.state = 'pending'
                   AND j.next_attempt_at IS NOT NULL AND j.next_attempt_at <= ?1
                   AND NOT ",
            earlier_row_open!(),
            "
                 ORDER BY j.id LIMIT ?3)
             RETURNING id, run_id, ticket_id, payload, attempts, replayed"
        ))
        .bind(now_ms)
        .bind(run_id)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        claimed.extend(waiting.iter().map(claimed_row));

        let room = limit - claimed.len() as i64;
        if room > 0 && !cursor.exhausted {
            // The window of the next fresh rows, walked by primary key.
            let ids: Vec<(i64,)> = sqlx::query_as(
                "SELECT id FROM jobs NOT INDEXED
                 WHERE id > ?1 AND run_id = ?2 AND state = 'pending' AND next_attempt_at IS NULL
                 ORDER BY id LIMIT ?3",
            )
            .bind(cursor.after_id)
            .bind(run_id)
            .bind(room)
            .fetch_all(&mut *tx)
            .await?;
            if (ids.len() as i64) < room {
                cursor.exhausted = true;
            }
            if let Some(&(end,)) = ids.last() {
                sqlx::query(concat!(
                    "UPDATE jobs SET next_attempt_at = 0 WHERE id IN (
                         SELECT j.id FROM jobs j NOT INDEXED
                         WHERE j.id > ?1 AND j.id <= ?2 AND j.run_id = ?3
                           AND j.state = 'pending' AND j.next_attempt_at IS NULL
                           AND ",
                    earlier_row_open!(),
                    ")"
                ))
                .bind(cursor.after_id)
                .bind(end)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
                let fresh = sqlx::query(
                    "UPDATE jobs NOT INDEXED SET state = 'in_flight', attempts = attempts + 1,
                         updated_at = ?1
                     WHERE id > ?2 AND id <= ?3 AND run_id = ?4
                       AND state = 'pending' AND next_attempt_at IS NULL
                     RETURNING id, run_id, ticket_id, payload, attempts, replayed",
                )
                .bind(now_ms)
                .bind(cursor.after_id)
                .bind(end)
                .bind(run_id)
                .fetch_all(&mut *tx)
                .await?;
                claimed.extend(fresh.iter().map(claimed_row));
                cursor.after_id = end;
            }
        }
        tx.commit().await?;
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    /// When the next waiting row of a run falls due (unix ms), if any row waits.
    pub async fn next_due(&self, run_id: i64) -> Result<Option<i64>, StoreError> {
        let (due,): (Option<i64>,) = sqlx::query_as(
            "SELECT min(next_attempt_at) FROM jobs INDEXED BY jobs_waiting
             WHERE run_id = ? AND state = 'pending' AND next_attempt_at IS NOT NULL",
        )
        .bind(run_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(due)
    }

    /// Pending and in-flight rows of a run: the work left.
    pub async fn open_rows(&self, run_id: i64) -> Result<i64, StoreError> {
        let counts = self.counts(run_id).await?;
        Ok(counts.pending + counts.in_flight)
    }
}

fn claimed_row(row: &sqlx::sqlite::SqliteRow) -> Claimed {
    Claimed {
        id: row.get(0),
        run_id: row.get(1),
        ticket_id: row.get::<Option<String>, _>(2).unwrap_or_default(),
        payload: row.get::<Option<String>, _>(3).unwrap_or_default(),
        attempt: row.get(4),
        replayed: row.get(5),
    }
}

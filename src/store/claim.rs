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

    /// Whether any row of the run waits, and when the next one that is not yet due falls
    /// due (unix ms). A due row that could not be claimed waits for an earlier row of its
    /// ticket, which is itself either in flight or due later, so these two answers tell the
    /// dispatcher whether it is done and how long it may sleep.
    pub async fn waiting(
        &self,
        run_id: i64,
        now_ms: i64,
    ) -> Result<(bool, Option<i64>), StoreError> {
        let (count, next): (i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*), min(CASE WHEN next_attempt_at > ?1 THEN next_attempt_at END)
             FROM jobs INDEXED BY jobs_waiting
             WHERE run_id = ?2 AND state = 'pending' AND next_attempt_at IS NOT NULL",
        )
        .bind(now_ms)
        .bind(run_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((count > 0, next))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AttemptRecord, NewJob, Next, Outcome, SourceProgress, SourceStart};

    /// A store with one run whose rows have these ticket ids, in order.
    async fn store_with(tickets: &[&str]) -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("k.db")).await.unwrap();
        let (run, _) = store.get_or_create_run("r").await.unwrap();
        let SourceStart::New { source_id } = store
            .begin_source(run.id, "a.csv", "h", "s", "csv")
            .await
            .unwrap()
        else {
            panic!()
        };
        let mut writer = store.ingest_writer(run.id, source_id).await.unwrap();
        let jobs: Vec<NewJob> = tickets
            .iter()
            .enumerate()
            .map(|(i, t)| NewJob {
                line: i as i64 + 2,
                ticket_id: Some((*t).to_owned()),
                payload: Some(format!("{{\"ticket_id\":\"{t}\",\"n\":{i}}}")),
                payload_hash: None,
                invalid_reason: None,
                sync_key: None,
            })
            .collect();
        writer.write(&jobs).await.unwrap();
        let n = tickets.len() as i64;
        let progress = SourceProgress {
            last_line: n + 1,
            rows_read: n,
            rows_valid: n,
            rows_invalid: 0,
        };
        writer.finish(progress, "h").await.unwrap();
        (dir, store, run.id)
    }

    fn done(id: i64) -> Outcome {
        Outcome {
            job_id: id,
            http_status: Some(200),
            next: Next::Succeeded { response: None },
            attempt: None,
        }
    }

    #[tokio::test]
    async fn a_tickets_rows_are_claimed_one_at_a_time_in_order() {
        let (_dir, store, run) = store_with(&["a", "b", "a", "c", "a"]).await;
        let mut cursor = Cursor::default();
        let first = store.claim(run, &mut cursor, 10, 1).await.unwrap();
        let ids: Vec<i64> = first.iter().map(|c| c.id).collect();
        assert_eq!(ids, [1, 2, 4], "later rows of ticket a wait");
        assert!(first.iter().all(|c| c.attempt == 1 && !c.replayed));
        assert!(cursor.exhausted);
        assert_eq!(store.waiting(run, 1).await.unwrap(), (true, None));
        assert!(
            store
                .claim(run, &mut cursor, 10, 1)
                .await
                .unwrap()
                .is_empty()
        );
        store.record_outcomes(&[done(1)]).await.unwrap();
        let next: Vec<i64> = store
            .claim(run, &mut cursor, 10, 1)
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(next, [3]);
        store.record_outcomes(&[done(3)]).await.unwrap();
        let next: Vec<i64> = store
            .claim(run, &mut cursor, 10, 1)
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(next, [5]);
        store
            .record_outcomes(&[done(2), done(4), done(5)])
            .await
            .unwrap();
        assert_eq!(store.waiting(run, 1).await.unwrap(), (false, None));
        assert_eq!(store.counts(run).await.unwrap().succeeded, 5);
    }

    #[tokio::test]
    async fn a_retry_waits_for_its_time_and_holds_back_its_ticket() {
        let (_dir, store, run) = store_with(&["a", "a"]).await;
        let mut cursor = Cursor::default();
        let first = store.claim(run, &mut cursor, 10, 1_000).await.unwrap();
        assert_eq!(first.len(), 1);
        let retry = Outcome {
            job_id: 1,
            http_status: Some(503),
            next: Next::Retry {
                at_ms: 5_000,
                class: "transient".into(),
                message: "HTTP 503".into(),
            },
            attempt: None,
        };
        store.record_outcomes(&[retry]).await.unwrap();
        assert_eq!(
            store.waiting(run, 1_000).await.unwrap(),
            (true, Some(5_000))
        );
        assert!(
            store
                .claim(run, &mut cursor, 10, 4_999)
                .await
                .unwrap()
                .is_empty()
        );
        let again = store.claim(run, &mut cursor, 10, 5_000).await.unwrap();
        assert_eq!(
            (again[0].id, again[0].attempt),
            (1, 2),
            "the retry counts as attempt 2"
        );
    }

    #[tokio::test]
    async fn orphans_go_back_replayed_and_completions_need_the_claim() {
        let (_dir, store, run) = store_with(&["a", "b"]).await;
        let mut cursor = Cursor::default();
        assert_eq!(store.claim(run, &mut cursor, 10, 1).await.unwrap().len(), 2);
        // A runner died here. The next one puts its rows back.
        assert_eq!(store.requeue_orphans(run, 2).await.unwrap(), 2);
        // A late result of the dead runner's claim changes nothing.
        assert_eq!(store.record_outcomes(&[done(1)]).await.unwrap(), 0);
        let mut cursor = Cursor::default();
        let again = store.claim(run, &mut cursor, 10, 3).await.unwrap();
        assert!(
            again.iter().all(|c| c.replayed && c.attempt == 1),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn batches_of_any_size_store_exactly_their_rows() {
        // Statements are padded to 1, 8, 64 or 512 rows: sizes on each side of those.
        let tickets: Vec<String> = (0..1200).map(|i| format!("t{i}")).collect();
        let names: Vec<&str> = tickets.iter().map(String::as_str).collect();
        let (_dir, store, run) = store_with(&names).await;
        let mut cursor = Cursor::default();
        let mut ids = Vec::new();
        while ids.len() < names.len() {
            let claimed = store.claim(run, &mut cursor, 500, 1).await.unwrap();
            ids.extend(claimed.iter().map(|c| c.id));
        }
        let mut rest = &ids[..];
        for size in [1, 7, 9, 63, 65, 511, 513] {
            let (batch, tail) = rest.split_at(size);
            rest = tail;
            let outcomes: Vec<Outcome> = batch
                .iter()
                .map(|&id| Outcome {
                    attempt: Some(AttemptRecord {
                        attempt: 1,
                        started_ms: 1,
                        duration_ms: 1,
                        http_status: Some(200),
                        class: "success",
                        in_doubt: false,
                        excerpt: String::new(),
                    }),
                    ..done(id)
                })
                .collect();
            let changed = store.record_outcomes(&outcomes).await.unwrap();
            assert_eq!(changed, size as u64, "batch of {size}");
        }
        assert!(rest.len() < 512 && !rest.is_empty());
        let counts = store.counts(run).await.unwrap();
        assert_eq!(
            (counts.succeeded, counts.in_flight),
            (1169, names.len() as i64 - 1169)
        );
        let (attempts,): (i64,) = sqlx::query_as("SELECT count(*) FROM attempts")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(attempts, 1169, "no padding row is stored");
    }
}

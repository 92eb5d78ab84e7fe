//! The journal of chain steps (migration 0011): successes recorded in one appended table while
//! the rest of their chain goes out, folded into `jobs` when the chain ends.
//!
//! Between two rows of a chain the success of the first must be durable before the second is
//! sent. Stored on the row itself, every commit of a drain with hundreds of chains going dirtied
//! a `jobs` page (and index pages) per chain; appended here, a commit's steps share a page or
//! two. The rows of a chain are brought into `jobs` together when it ends (its rows are a
//! ticket's consecutive rows, a page or two), and the journal's oldest entries are dropped as a
//! prefix once folded, which writes no page of the entries dropped.
//!
//! While its chain goes on a recorded row is still `in_flight` in `jobs`: every reader sees it
//! as being sent (counts, the claim's "row before in its ticket" check, the release trigger,
//! the resolved rule), which only delays what its success changes until the chain ends.
//! A runner that starts after one died folds every entry before it puts orphans back
//! ([`Store::requeue_orphans`]), so a replay starts at the first row of each chain whose
//! success was not recorded.

use std::sync::LazyLock;

use sqlx::SqliteConnection;

use super::results::{Next, Outcome, sized, values_sql};
use super::{Store, StoreError};

/// A success recorded in the journal, numbered by the drain that wrote it: its row stays in
/// flight until its chain is folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The entry's place in the journal, increasing in the order the drain records them.
    pub seq: i64,
    /// A success ([`Next::Succeeded`]); its attempt is recorded as any outcome's.
    pub outcome: Outcome,
}

/// What one transaction of a drain's writer stores.
#[derive(Debug, Clone, Copy, Default)]
pub struct Batch<'a> {
    /// Outcomes stored on their rows.
    pub outcomes: &'a [Outcome],
    /// Successes of rows whose chain goes on: journaled, the rows stay in flight.
    pub steps: &'a [Step],
    /// Entries whose chains ended, as (`seq`, job id): their successes are stored on their
    /// rows now.
    pub fold: &'a [(i64, i64)],
    /// Every entry below this `seq` is folded: they are dropped (0: none).
    pub folded_below: i64,
}

/// The journal INSERT for each statement size. Padding rows (all NULL) are filtered out.
static INSERT_STEPS: LazyLock<Vec<String>> = LazyLock::new(|| {
    super::results::STATEMENT_ROWS
        .iter()
        .map(|&rows| {
            values_sql(
                "INSERT INTO chain_steps (seq, job_id, attempt, http_status, response) \
                 SELECT * FROM (VALUES ",
                rows,
                5,
                ") WHERE column1 IS NOT NULL",
            )
        })
        .collect()
});

/// Stores the journal's successes on their rows: the row's own success UPDATE, with what the
/// entry kept. Only the claim that wrote the entry matches (still in flight, same attempt).
macro_rules! fold_sql {
    ($which:literal) => {
        concat!(
            "UPDATE jobs SET state = 'succeeded', next_attempt_at = NULL, error_class = NULL,
                 error_message = NULL, http_status = s.http_status,
                 response = coalesce(s.response, jobs.response), updated_at = ?1
             FROM chain_steps s
             WHERE ",
            $which,
            " AND jobs.id = s.job_id AND jobs.state = 'in_flight' AND jobs.attempts = s.attempt"
        )
    };
}

/// Appends `steps` to the journal.
pub(super) async fn insert(conn: &mut SqliteConnection, steps: &[Step]) -> Result<(), StoreError> {
    for chunk in steps.chunks(super::results::ROWS_PER_STATEMENT) {
        let (sql, padding) = sized(&INSERT_STEPS, chunk.len());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for step in chunk {
            let response = match &step.outcome.next {
                Next::Succeeded { response } => response.as_deref(),
                _ => None,
            };
            query = query
                .bind(step.seq)
                .bind(step.outcome.job_id)
                .bind(step.outcome.attempt.as_ref().map_or(0, |a| a.attempt))
                .bind(step.outcome.http_status.map(i64::from))
                .bind(response);
        }
        for _ in 0..padding * 5 {
            query = query.bind(None::<i64>);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Stores the entries `fold` (`seq`, job id) on their rows, marked updated at `now`. Returns
/// how many rows changed.
pub(super) async fn fold(
    conn: &mut SqliteConnection,
    fold: &[(i64, i64)],
    now: i64,
) -> Result<u64, StoreError> {
    if fold.is_empty() {
        return Ok(0);
    }
    let seqs: Vec<i64> = fold.iter().map(|&(seq, _)| seq).collect();
    let done = sqlx::query(fold_sql!("s.seq IN (SELECT value FROM json_each(?2))"))
        .bind(now)
        .bind(super::claim::id_list(&seqs))
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// Drops the entries below `seq`, all folded: a prefix of the table, so the pages it frees
/// are not written.
pub(super) async fn drop_below(conn: &mut SqliteConnection, seq: i64) -> Result<(), StoreError> {
    if seq > 0 {
        sqlx::query("DELETE FROM chain_steps WHERE seq < ?")
            .bind(seq)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Folds every entry a runner left (it died before their chains ended) and empties the
/// journal. Only one runner drains a database at a time, so at its start every entry is left.
pub(super) async fn fold_left(conn: &mut SqliteConnection, now: i64) -> Result<u64, StoreError> {
    let done = sqlx::query(fold_sql!("1"))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM chain_steps")
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

impl Store {
    /// The `seq` a drain's first journal entry takes: after any entry in the table.
    pub async fn next_step_seq(&self) -> Result<i64, StoreError> {
        let (next,): (i64,) = sqlx::query_as("SELECT coalesce(max(seq), 0) + 1 FROM chain_steps")
            .fetch_one(&self.pool)
            .await?;
        Ok(next)
    }
}

impl Store {
    /// Entries in the journal of chain steps. Only in tests and with the `test-support`
    /// feature: a test that kills a runner counts what it left there.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn chain_steps_left(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM chain_steps")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::store_with;
    use crate::store::{AttemptRecord, Claimed, Cursor};

    fn success(row: &Claimed) -> Outcome {
        Outcome {
            job_id: row.id,
            http_status: Some(200),
            next: Next::Succeeded {
                response: Some(format!("{{\"row\":{}}}", row.id)),
            },
            attempt: Some(AttemptRecord {
                attempt: row.attempt,
                started_ms: 1,
                duration_ms: 1,
                http_status: Some(200),
                class: "success",
                in_doubt: false,
                excerpt: String::new(),
            }),
        }
    }

    /// (id, state, replayed, response) of every row.
    async fn rows(store: &Store) -> Vec<(i64, String, bool, Option<String>)> {
        sqlx::query_as("SELECT id, state, replayed, response FROM jobs ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap()
    }

    async fn claim_all(store: &Store, run: i64) -> Vec<Claimed> {
        store
            .claim(run, &mut Cursor::default(), 16, 32, 1)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_crash_between_journaled_steps_replays_from_the_first_unrecorded_row() {
        let (_dir, store, run) = store_with(&["a", "a", "a", "a", "a", "b"]).await;
        let claimed = claim_all(&store, run).await;
        let chain: Vec<(i64, bool)> = claimed.iter().map(|c| (c.id, c.follows)).collect();
        assert_eq!(
            chain,
            [
                (1, false),
                (2, true),
                (3, true),
                (4, true),
                (5, true),
                (6, false)
            ]
        );
        // Rows 1 and 2 succeeded, each in its own commit, while the chain went on; row 3 was
        // being sent when the runner died.
        for (seq, row) in [(1, &claimed[0]), (2, &claimed[1])] {
            let steps = [Step {
                seq,
                outcome: success(row),
            }];
            let batch = Batch {
                steps: &steps,
                ..Batch::default()
            };
            assert_eq!(store.record(batch).await.unwrap(), 0, "rows stay in flight");
        }
        assert_eq!(store.counts(run).await.unwrap().in_flight, 6);
        assert_eq!(store.chain_steps_left().await.unwrap(), 2);

        let replayed = store.requeue_orphans(run, 10).await.unwrap();
        assert_eq!(replayed, 4, "rows 3 to 6");
        let state = rows(&store).await;
        let response = |id: i64| Some(format!("{{\"row\":{id}}}"));
        assert_eq!(
            state,
            [
                (1, "succeeded".into(), false, response(1)),
                (2, "succeeded".into(), false, response(2)),
                (3, "pending".into(), true, None),
                (4, "pending".into(), false, None),
                (5, "pending".into(), false, None),
                (6, "pending".into(), true, None),
            ],
            "the recorded successes are stored; only the first row not recorded may have been \
             sent"
        );
        assert_eq!(store.chain_steps_left().await.unwrap(), 0);
        let again: Vec<(i64, i64)> = claim_all(&store, run)
            .await
            .iter()
            .map(|c| (c.id, c.attempt))
            .collect();
        assert_eq!(
            again,
            [(3, 1), (4, 1), (5, 1), (6, 1)],
            "the replay starts at row 3"
        );
    }

    #[tokio::test]
    async fn a_chain_is_folded_when_it_ends_and_its_entries_dropped() {
        let (_dir, store, run) = store_with(&["a", "a", "a", "b"]).await;
        let claimed = claim_all(&store, run).await;
        let steps: Vec<Step> = claimed[..2]
            .iter()
            .zip(1..)
            .map(|(row, seq)| Step {
                seq,
                outcome: success(row),
            })
            .collect();
        let batch = Batch {
            steps: &steps,
            outcomes: &[success(&claimed[3])],
            ..Batch::default()
        };
        assert_eq!(store.record(batch).await.unwrap(), 1, "row 4 (ticket b)");
        // Row 3 ends the chain: the rows before it are stored with it, and the journal's
        // entries below 3 are dropped.
        let batch = Batch {
            outcomes: &[success(&claimed[2])],
            fold: &[(1, 1), (2, 2)],
            folded_below: 3,
            ..Batch::default()
        };
        assert_eq!(store.record(batch).await.unwrap(), 3);
        let states: Vec<String> = rows(&store).await.into_iter().map(|r| r.1).collect();
        assert_eq!(states, ["succeeded"; 4]);
        assert_eq!(store.chain_steps_left().await.unwrap(), 0);
        let counts = store.counts(run).await.unwrap();
        assert_eq!((counts.succeeded, counts.in_flight), (4, 0));
        let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            attempts, 4,
            "every step's attempt is recorded when it happens"
        );
    }

    #[tokio::test]
    async fn an_entry_applies_only_to_the_claim_that_wrote_it() {
        let (_dir, store, run) = store_with(&["a", "a"]).await;
        let claimed = claim_all(&store, run).await;
        let mut stale = success(&claimed[0]);
        stale.attempt.as_mut().unwrap().attempt = 7;
        let steps = [Step {
            seq: 1,
            outcome: stale,
        }];
        let batch = Batch {
            steps: &steps,
            ..Batch::default()
        };
        store.record(batch).await.unwrap();
        assert_eq!(store.requeue_orphans(run, 10).await.unwrap(), 2);
        let states: Vec<String> = rows(&store).await.into_iter().map(|r| r.1).collect();
        assert_eq!(states, ["pending", "pending"], "not this claim's success");
        assert_eq!(store.chain_steps_left().await.unwrap(), 0);
    }
}

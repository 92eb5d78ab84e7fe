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

use super::statements::{ROWS_PER_STATEMENT, STATEMENT_ROWS, id_list, sized, values_sql};
use super::{Store, StoreError};

/// The journal INSERT for each statement size. Padding rows (all NULL) are filtered out.
static INSERT_STEPS: LazyLock<Vec<String>> = LazyLock::new(|| {
    STATEMENT_ROWS
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

/// One journal entry: a success whose row stays in flight until its chain is folded.
#[derive(Debug)]
pub(super) struct Entry<'a> {
    pub seq: i64,
    pub job_id: i64,
    /// The claim's attempt number.
    pub attempt: i64,
    pub http_status: Option<i64>,
    /// What the success keeps on the row.
    pub response: Option<&'a str>,
}

/// Appends `entries` to the journal.
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    entries: &[Entry<'_>],
) -> Result<(), StoreError> {
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let (sql, padding) = sized(&INSERT_STEPS, chunk.len());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for entry in chunk {
            query = query
                .bind(entry.seq)
                .bind(entry.job_id)
                .bind(entry.attempt)
                .bind(entry.http_status)
                .bind(entry.response);
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
        .bind(id_list(&seqs))
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

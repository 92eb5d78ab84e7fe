//! Deciding at ingest which rows need not be sent: unchanged since their sync key's latest
//! row, or superseded by a newer one (`--supersede`).
//!
//! A chunk of rows costs one probe statement: for each distinct sync key, the newest row of
//! that key that succeeded (against the current target) or is pending or in flight. A sync
//! key digests its ticket id, so a snapshot key (the ticket's only one) is found by walking the
//! ticket's entries of `jobs_by_ticket_sent` from the newest down, comparing the key in the
//! entry; an event key (`[delta] key`, many per ticket) by one descent of `jobs_by_event_key`,
//! which holds only such rows (migration 0012). Rows earlier in the
//! same chunk are not in the table yet, so the decision walks the chunk in order over a map
//! seeded by the probe.
//!
//! An unchanged row is stored without its sync key unless a failed row of the key is newer
//! than the row it equals (it then resolves that failure, see `history.rs`): nothing else
//! looks an unchanged row up by key, and a night of unchanged rows then adds no randomly
//! placed index entry (a row with neither payload nor key is not in `jobs_by_ticket_sent`).

use std::collections::HashMap;
use std::sync::LazyLock;

use sqlx::Sqlite;
use sqlx::pool::PoolConnection;

use super::{NewJob, StoreError, now_ms};

mod seen;
use seen::Seen;

/// Keys per probe statement; a chunk's distinct keys are padded with NULLs up to it so the
/// statement is prepared once. The ingest's full insert chunk (1000 rows) takes one probe.
const KEYS_PER_PROBE: usize = 1000;

/// Keys per probe statement when a chunk has few to probe (a new database: the keys its
/// filter may have seen), so a key or two is not padded to a thousand.
const KEYS_PER_SMALL_PROBE: usize = 16;

/// Supersede updates per statement (4 values a row).
const SUPERSEDE_ROWS: usize = 256;

/// How an ingest treats rows that match what the database already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaOptions {
    /// Store a row equal to its sync key's latest sent (or on its way) row as `skipped`.
    pub skip_unchanged: bool,
    /// When a new row of a sync key is stored, that key's older `pending` rows become
    /// `skipped` (they would only be overwritten).
    pub supersede: bool,
    /// The mapping names a `[delta] key`: each row's sync key is an event of its ticket, and
    /// a ticket has many. Such rows are stored with `event_key = 1` and probed through
    /// `jobs_by_event_key` (migration 0012) instead of a walk over their ticket's entries.
    pub event_keys: bool,
}

impl Default for DeltaOptions {
    fn default() -> Self {
        Self {
            skip_unchanged: true,
            supersede: false,
            event_keys: false,
        }
    }
}

/// Rows an ingest stored or turned `skipped`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeltaCounts {
    /// New rows stored `skipped` because they equal what was sent.
    pub unchanged: i64,
    /// Pending rows (earlier ones, or rows of this ingest) skipped for a newer row.
    pub superseded: i64,
}

/// What a chunk's row becomes. The value is what the insert statement's CASE reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Pending = 0,
    Invalid = 1,
    Unchanged = 2,
    Superseded = 3,
}

/// The decisions for one chunk.
#[derive(Debug, Default)]
pub(super) struct Decisions {
    /// Per row of the chunk: its kind and, for skipped rows, the reason.
    pub rows: Vec<(Kind, Option<String>)>,
    /// Earlier pending rows to skip: (ticket, sync key, newest id to skip, reason).
    pub supersede: Vec<(String, [u8; 16], i64, String)>,
    /// Rows (indexes into `rows`, ascending) stored without their sync key: unchanged rows
    /// that nothing will look up by it (see [`decide`]).
    pub keyless: Vec<usize>,
}

/// The newest row of a sync key that counts for comparison.
#[derive(Debug, Clone)]
struct Latest {
    hash: Option<[u8; 16]>,
    pending: bool,
    /// The run holding it; `None` for the run being ingested.
    run: Option<i64>,
    line: i64,
    /// `Some(index)` for a row of this chunk, `None` for a stored one.
    chunk_index: Option<usize>,
    id: i64,
    /// A failed row of the key is newer than this one.
    failed_after: bool,
}

/// The probe: the newest counting row of each (ticket, key) in the VALUES list, all in one JSON
/// array of `[position of the key, id, hex payload hash, pending, line, run id, failed row
/// newer]`. One row for the chunk rather than one per key: sqlx hands each result row from its
/// SQLite thread to the runtime, and on a night of unchanged rows (a row for nearly every key)
/// those hand-offs took a quarter of the re-ingest. The row found answers from where the
/// index walk left its cursor (a join on its id read the table a second time). The keys come
/// sorted by ticket, so consecutive probes descend to neighbouring entries. Indexed by
/// [event keys][failed rows in the database][few keys].
pub(super) static PROBES: [[[LazyLock<String>; 2]; 2]; 2] = [
    [
        [
            LazyLock::new(|| probe_sql(&TICKET_WALK, "0", KEYS_PER_PROBE)),
            LazyLock::new(|| probe_sql(&TICKET_WALK, "0", KEYS_PER_SMALL_PROBE)),
        ],
        [
            LazyLock::new(|| probe_sql(&TICKET_WALK, TICKET_FAILED_AFTER, KEYS_PER_PROBE)),
            LazyLock::new(|| probe_sql(&TICKET_WALK, TICKET_FAILED_AFTER, KEYS_PER_SMALL_PROBE)),
        ],
    ],
    [
        [
            LazyLock::new(|| probe_sql(&EVENT_SEEK, "0", KEYS_PER_PROBE)),
            LazyLock::new(|| probe_sql(&EVENT_SEEK, "0", KEYS_PER_SMALL_PROBE)),
        ],
        [
            LazyLock::new(|| probe_sql(&EVENT_SEEK, EVENT_FAILED_AFTER, KEYS_PER_PROBE)),
            LazyLock::new(|| probe_sql(&EVENT_SEEK, EVENT_FAILED_AFTER, KEYS_PER_SMALL_PROBE)),
        ],
    ],
];

/// How the probe reaches a key's rows: the index and the terms naming the key `k.key` (of
/// ticket `k.ticket`) as row `p`.
struct Reach {
    index: &'static str,
    key: &'static str,
}

/// A snapshot key (the ticket's only one): its ticket's entries from the newest down, the
/// first of the key is usually the newest entry.
const TICKET_WALK: Reach = Reach {
    index: "jobs_by_ticket_sent",
    key: "p.ticket_id = k.ticket AND p.sync_key = k.key",
};

/// An event key: one descent of `jobs_by_event_key`, which holds every row an event key can
/// match (rows of `[delta] key` ingests, and every row from before migration 0012). A walk
/// over the ticket would pass the entries of all its other events, per row.
const EVENT_SEEK: Reach = Reach {
    index: "jobs_by_event_key",
    key: "p.sync_key = k.key AND p.event_key = 1",
};

/// The probe's "a failed row of the key is newer"; without failed rows in the database the
/// probe answers 0 instead (a second descent per key saved).
const TICKET_FAILED_AFTER: &str = "EXISTS (SELECT 1 FROM jobs f INDEXED BY jobs_by_ticket_sent
         WHERE f.ticket_id = p.ticket_id AND f.sync_key = p.sync_key
           AND f.id > p.id AND f.state = 'failed')";

/// [`TICKET_FAILED_AFTER`] for an event key.
const EVENT_FAILED_AFTER: &str = "EXISTS (SELECT 1 FROM jobs f INDEXED BY jobs_by_event_key
         WHERE f.sync_key = p.sync_key AND f.event_key = 1
           AND f.id > p.id AND f.state = 'failed')";

fn probe_sql(reach: &Reach, failed_after: &str, keys: usize) -> String {
    let mut sql = String::from("WITH k(pos, ticket, key) AS (VALUES ");
    for i in 0..keys {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("({i},?,?)"));
    }
    sql.push_str(&format!(
        ") SELECT coalesce('[' || group_concat((
             SELECT json_array(k.pos, p.id, hex(p.payload_hash), p.state = 'pending', p.line,
                               p.run_id, {failed_after})
             FROM jobs p INDEXED BY {index}
             WHERE {key}
               AND p.state IN ('succeeded', 'pending', 'in_flight')
               AND (p.state != 'succeeded' OR ifnull(p.updated_at, 0) >= ?)
             ORDER BY p.id DESC LIMIT 1), ',') || ']', '[]')
         FROM k",
        index = reach.index,
        key = reach.key,
    ));
    sql
}

pub(super) static SUPERSEDE_SQL: LazyLock<String> = LazyLock::new(|| {
    let mut sql = String::from("WITH s(ticket, key, upto, reason) AS (VALUES ");
    for i in 0..SUPERSEDE_ROWS {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?)");
    }
    sql.push_str(
        // Driven from the keys (CROSS JOIN keeps `s` outside): as `UPDATE .. FROM s`, SQLite
        // planned a walk of a whole index for 256 keys.
        ") UPDATE jobs SET state = 'skipped', error_class = 'superseded',
             error_message = (SELECT s.reason FROM s
                              WHERE s.key = jobs.sync_key AND jobs.id <= s.upto LIMIT 1),
             next_attempt_at = NULL, updated_at = ?
         WHERE id IN (SELECT j.id FROM s CROSS JOIN jobs j INDEXED BY jobs_by_ticket_sent
                      WHERE j.ticket_id = s.ticket AND j.sync_key = s.key AND j.id <= s.upto
                        AND j.state = 'pending')",
    );
    sql
});

/// One element of the probe's array (see [`PROBES`]), borrowed from its text.
type ProbeRow<'a> = (usize, i64, &'a str, i64, i64, i64, i64);

/// What deciding needs across the chunks of one ingest.
#[derive(Debug)]
pub(super) struct Context {
    pub options: DeltaOptions,
    /// The run being ingested, for reasons.
    pub run_name: String,
    /// Rows that succeeded before this (Unix ms) went to an earlier target and do not count.
    pub since_ms: i64,
    /// Whether the database holds failed rows (set when each transaction begins: the writer
    /// holds the write lock until it commits, so no drain fails a row meanwhile).
    pub failed_rows: bool,
    /// Names of the runs that earlier rows found belong to.
    run_names: HashMap<i64, String>,
    /// While every row of the database is one this ingest stored (it started on an empty
    /// table and no other writer has added a row since): the keys it stored. Only a key the
    /// filter may hold is probed, so a first ingest makes no probe for a key seen once.
    seen: Option<Seen>,
    /// The last id this writer inserted (or the table's last id when it started).
    last_id: i64,
}

impl Context {
    /// `empty`: the job table held no row when the ingest started.
    pub fn new(options: DeltaOptions, run_name: String, since_ms: i64, empty: bool) -> Self {
        Self {
            options,
            run_name,
            since_ms,
            failed_rows: true,
            run_names: HashMap::new(),
            seen: empty.then(Seen::new),
            last_id: 0,
        }
    }

    /// Records the id of the last row the writer inserted.
    pub fn inserted_up_to(&mut self, id: i64) {
        self.last_id = id;
    }

    /// Called when a transaction begins (the writer then holds the write lock until it
    /// commits): notes whether failed rows exist, and stops trusting the filter if another
    /// writer added rows since the last transaction.
    pub async fn refresh(&mut self, conn: &mut PoolConnection<Sqlite>) -> Result<(), StoreError> {
        let (failed, last): (bool, i64) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM run_counts WHERE state = 'failed' AND n > 0),
                    coalesce((SELECT max(id) FROM jobs), 0)",
        )
        .fetch_one(&mut **conn)
        .await?;
        self.failed_rows = failed;
        if last != self.last_id {
            self.seen = None;
        }
        Ok(())
    }
}

/// Whether the job table holds no row (a new database: nothing earlier to compare with).
pub(super) async fn table_empty(conn: &mut PoolConnection<Sqlite>) -> Result<bool, StoreError> {
    let (empty,): (bool,) = sqlx::query_as("SELECT NOT EXISTS (SELECT 1 FROM jobs)")
        .fetch_one(&mut **conn)
        .await?;
    Ok(empty)
}

/// Decides every row of a chunk: probes the table for the chunk's keys, then walks the rows in
/// order.
pub(super) async fn decide(
    conn: &mut PoolConnection<Sqlite>,
    jobs: &[NewJob],
    context: &mut Context,
) -> Result<Decisions, StoreError> {
    let options = context.options;
    let mut latest: HashMap<[u8; 16], Latest> = HashMap::new();
    let mut keys: Vec<(&str, [u8; 16])> = Vec::new();
    for job in jobs {
        if let (Some(key), Some(ticket), None) = (job.sync_key, &job.ticket_id, &job.invalid_reason)
            && context
                .seen
                .as_ref()
                .is_none_or(|seen| seen.may_contain(&key))
        {
            keys.push((ticket, key));
        }
    }
    // Rows earlier in this chunk are found in `latest` below, not by the probe.
    if let Some(seen) = &mut context.seen {
        for job in jobs {
            if let (Some(key), None) = (&job.sync_key, &job.invalid_reason) {
                seen.insert(key);
            }
        }
    }
    // In the index's order (SQLite compares text bytewise, as `str` does).
    keys.sort_unstable();
    keys.dedup();
    for part in keys.chunks(KEYS_PER_PROBE) {
        let small = part.len() <= KEYS_PER_SMALL_PROBE;
        let size = if small {
            KEYS_PER_SMALL_PROBE
        } else {
            KEYS_PER_PROBE
        };
        let sql = PROBES[usize::from(options.event_keys)][usize::from(context.failed_rows)]
            [usize::from(small)]
        .as_str();
        let mut query = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql));
        for (ticket, key) in part {
            query = query.bind(*ticket).bind(key.to_vec());
        }
        for _ in part.len()..size {
            query = query.bind(None::<&str>).bind(None::<Vec<u8>>);
        }
        let (found,) = query.bind(context.since_ms).fetch_one(&mut **conn).await?;
        let found: Vec<ProbeRow> = serde_json::from_str(&found).map_err(|e| {
            StoreError::Query(sqlx::Error::Protocol(format!(
                "the sync-key probe answered what is not its JSON: {e}"
            )))
        })?;
        let mut unnamed = Vec::new();
        for &(position, id, hash, pending, line, run, failed_after) in &found {
            let Some(&(_, key)) = part.get(position) else {
                continue;
            };
            if !context.run_names.contains_key(&run) {
                unnamed.push(run);
            }
            latest.insert(
                key,
                Latest {
                    hash: unhex(hash),
                    pending: pending != 0,
                    run: Some(run),
                    line,
                    chunk_index: None,
                    id,
                    failed_after: failed_after != 0,
                },
            );
        }
        if !unnamed.is_empty() {
            unnamed.sort_unstable();
            unnamed.dedup();
            let names: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, name FROM runs WHERE id IN (SELECT value FROM json_each(?))",
            )
            .bind(serde_json::to_string(&unnamed).unwrap_or_default())
            .fetch_all(&mut **conn)
            .await?;
            context.run_names.extend(names);
        }
    }
    let run_name = context.run_name.as_str();
    let mut decisions = Decisions {
        rows: Vec::with_capacity(jobs.len()),
        supersede: Vec::new(),
        keyless: Vec::new(),
    };
    for (index, job) in jobs.iter().enumerate() {
        let key = match (&job.invalid_reason, job.sync_key) {
            (Some(_), _) => {
                decisions.rows.push((Kind::Invalid, None));
                continue;
            }
            (None, None) => {
                decisions.rows.push((Kind::Pending, None));
                continue;
            }
            (None, Some(key)) => key,
        };
        let hash = job.payload_hash;
        let previous = latest.get(&key);
        if options.skip_unchanged
            && let Some(earlier) = previous
            && hash.is_some()
            && earlier.hash == hash
        {
            let run = match earlier.run {
                None => run_name,
                Some(id) => context.run_names.get(&id).map_or("?", String::as_str),
            };
            let reason = format!("unchanged since run {run}, line {}", earlier.line);
            // Only a failed row between the two looks for it by key (it resolves that
            // failure, `history.rs`); otherwise the key would only cost a randomly placed
            // index entry per row and night, most of a nightly re-ingest's writes.
            if !earlier.failed_after {
                decisions.keyless.push(index);
            }
            decisions.rows.push((Kind::Unchanged, Some(reason)));
            continue;
        }
        if options.supersede
            && let Some(earlier) = previous
            && earlier.pending
        {
            let reason = format!("superseded by run {run_name}, line {}", job.line);
            match earlier.chunk_index {
                Some(i) => decisions.rows[i] = (Kind::Superseded, Some(reason)),
                None => decisions.supersede.push((
                    job.ticket_id.clone().unwrap_or_default(),
                    key,
                    earlier.id,
                    reason,
                )),
            }
        }
        decisions.rows.push((Kind::Pending, None));
        latest.insert(
            key,
            Latest {
                hash,
                pending: true,
                run: None,
                line: job.line,
                chunk_index: Some(index),
                id: 0,
                failed_after: false,
            },
        );
    }
    Ok(decisions)
}

/// Skips the earlier pending rows a chunk superseded; returns how many changed.
pub(super) async fn supersede(
    conn: &mut PoolConnection<Sqlite>,
    rows: &[(String, [u8; 16], i64, String)],
) -> Result<u64, StoreError> {
    let mut changed = 0;
    for part in rows.chunks(SUPERSEDE_ROWS) {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(SUPERSEDE_SQL.as_str()));
        for (ticket, key, upto, reason) in part {
            query = query
                .bind(ticket.as_str())
                .bind(key.to_vec())
                .bind(*upto)
                .bind(reason.as_str());
        }
        for _ in part.len()..SUPERSEDE_ROWS {
            query = query
                .bind(None::<&str>)
                .bind(None::<Vec<u8>>)
                .bind(None::<i64>)
                .bind(None::<String>);
        }
        changed += query
            .bind(now_ms())
            .execute(&mut **conn)
            .await?
            .rows_affected();
    }
    Ok(changed)
}

/// The 16 bytes of SQLite's `hex()` text of a payload hash (upper-case pairs); `None` for the
/// empty text of NULL or anything else.
fn unhex(text: &str) -> Option<[u8; 16]> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let text = text.as_bytes();
    if text.len() != 32 {
        return None;
    }
    let mut bytes = [0; 16];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::unhex;

    #[test]
    fn unhex_reads_sqlite_hex_and_null() {
        let mut bytes = [7; 16];
        bytes[..3].copy_from_slice(&[0, 255, 161]);
        assert_eq!(unhex("00FFa10707070707070707070707070707"), None);
        assert_eq!(unhex("00FFa107070707070707070707070707"), Some(bytes));
        assert_eq!(unhex(""), None);
        assert_eq!(unhex("ABC"), None);
        assert_eq!(unhex("ZZFFa107070707070707070707070707"), None);
    }
}

//! Deciding at ingest which rows need not be sent: unchanged since their sync key's latest
//! row, or superseded by a newer one (`--supersede`).
//!
//! A chunk of rows costs one probe statement: for each row with a sync key, the newest row of
//! that key that succeeded (against the current target) or is pending or in flight, compared
//! with the row's payload by SQLite itself. A sync key digests its ticket id, so a snapshot key
//! (the ticket's only one) is found by walking the ticket's entries of `jobs_by_ticket_sent`
//! from the newest down, comparing the key in the entry; an event key (`[delta] key`, many per
//! ticket) by one descent of `jobs_by_event_key`, which holds only such rows (migration 0012).
//! Rows earlier in the same chunk, and those of the chunk before (inserted while this one is
//! decided, see `IngestWriter::write`), are not in the table yet: the decision walks the
//! chunk in order over a map of them, and uses the probe's answer for a key it does not hold.
//!
//! The probe runs on a second connection, reading only (`probe::Reader`), while the writer's
//! inserts: it sees the rows committed before the writer's transaction began (the writer
//! holds the write lock until it commits, so no one else adds any). Keys of rows the open
//! transaction stored to send are kept in a small filter ([`Context::written`]) and probed on
//! the writer's connection, which sees them. On a database that was empty, every row is this
//! ingest's, and the writer probes the few keys it may have stored already (`seen.rs`); should
//! another process add rows meanwhile, the writer probes every key from then on (no reader
//! was opened).
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

pub(super) mod probe;
mod seen;

pub(super) use probe::{Asked, Probed, Reader, answer_reader, answer_writer, ask};
use seen::Seen;

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

/// An earlier pending row's key to skip: its ticket, sync key and the reason.
pub(super) type Supersede = (String, [u8; 16], String);

/// The decisions for one chunk.
#[derive(Debug, Default)]
pub(super) struct Decisions {
    /// Per row of the chunk: its kind and, for skipped rows, the reason.
    pub rows: Vec<(Kind, Option<String>)>,
    /// Pending rows stored before this chunk to skip: (ticket, sync key, reason), each key's
    /// rows up to the last id before the chunk's own (see [`supersede`]).
    pub supersede: Vec<Supersede>,
    /// Rows (indexes into `rows`, ascending) stored without their sync key: unchanged rows
    /// that nothing will look up by it (see [`decide`]).
    pub keyless: Vec<usize>,
}

/// A row of this ingest not yet visible to the probe (the chunk being decided, or the one
/// before it, which is inserted while this one is probed and decided).
#[derive(Debug, Clone, Copy)]
struct Recent {
    hash: Option<[u8; 16]>,
    line: i64,
    /// Its index in the chunk being decided; `None` for a row of the chunk before.
    chunk_index: Option<usize>,
}

pub(super) static SUPERSEDE_SQL: LazyLock<String> = LazyLock::new(|| {
    let mut sql = String::from("WITH s(ticket, key, reason) AS (VALUES ");
    for i in 0..SUPERSEDE_ROWS {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?)");
    }
    sql.push_str(
        // Driven from the keys (CROSS JOIN keeps `s` outside): as `UPDATE .. FROM s`, SQLite
        // planned a walk of a whole index for 256 keys.
        ") UPDATE jobs SET state = 'skipped', error_class = 'superseded',
             error_message = (SELECT s.reason FROM s WHERE s.key = jobs.sync_key LIMIT 1),
             next_attempt_at = NULL, updated_at = ?
         WHERE id IN (SELECT j.id FROM s CROSS JOIN jobs j INDEXED BY jobs_by_ticket_sent
                      WHERE j.ticket_id = s.ticket AND j.sync_key = s.key AND j.id <= ?
                        AND j.state = 'pending')",
    );
    sql
});

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
    /// The probe answers in its wide form: some run id, or a line met in this transaction,
    /// does not fit the packed one.
    wide: bool,
    /// Names of the runs that earlier rows found belong to.
    run_names: HashMap<i64, String>,
    /// While every row of the database is one this ingest stored (it started on an empty
    /// table and no other writer has added a row since): the keys it stored. Only a key the
    /// filter may hold is probed, so a first ingest makes no probe for a key seen once.
    seen: Option<Seen>,
    /// The keys of the rows to send decided since the writer's transaction began: a reader's
    /// connection does not see those rows, so their keys are probed on the writer's. Kept when
    /// the table held rows (the writer then opens a reader), none for a first ingest.
    written: Option<Seen>,
    /// The last id this writer inserted (or the table's last id when it started).
    last_id: i64,
    /// The sent rows of the chunk decided last, by key: it is inserted while the next chunk
    /// is probed, so that probe does not see it.
    recent: HashMap<[u8; 16], Recent>,
}

impl Context {
    /// `empty`: the job table held no row when the ingest started.
    pub fn new(options: DeltaOptions, run_name: String, since_ms: i64, empty: bool) -> Self {
        Self {
            options,
            run_name,
            since_ms,
            failed_rows: true,
            wide: false,
            run_names: HashMap::new(),
            seen: empty.then(|| Seen::new(seen::INGEST_BITS)),
            written: (!empty).then(|| Seen::new(seen::TRANSACTION_BITS)),
            last_id: 0,
            recent: HashMap::new(),
        }
    }

    /// Records the id of the last row the writer inserted.
    pub fn inserted_up_to(&mut self, id: i64) {
        self.last_id = id;
    }

    /// The id of the last row the writer inserted.
    pub fn last_id(&self) -> i64 {
        self.last_id
    }

    /// Called when a transaction begins, with every row decided so far inserted and committed
    /// (the writer then holds the write lock until it commits): notes whether failed rows
    /// exist, forgets the keys written (the reader sees those rows now), and stops trusting
    /// the ingest's filter if another writer added rows since the last transaction.
    pub async fn refresh(&mut self, conn: &mut PoolConnection<Sqlite>) -> Result<(), StoreError> {
        let (failed, last, runs): (bool, i64, i64) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM run_counts WHERE state = 'failed' AND n > 0),
                    coalesce((SELECT max(id) FROM jobs), 0),
                    coalesce((SELECT max(id) FROM runs), 0)",
        )
        .fetch_one(&mut **conn)
        .await?;
        self.failed_rows = failed;
        self.wide = runs >= probe::PACKED_RUNS;
        self.recent.clear();
        if let Some(written) = &mut self.written {
            written.clear();
        }
        if last != self.last_id {
            self.seen = None;
        }
        self.last_id = last;
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

/// The row a row is compared with: the newest counting row of its key, in this chunk, the
/// chunk before it or the table.
#[derive(Debug, Clone, Copy)]
struct Earlier {
    /// Its payload is the row's.
    equal: bool,
    pending: bool,
    /// The run holding it; `None` for the run being ingested.
    run: Option<i64>,
    line: i64,
    /// Its index in the chunk being decided.
    chunk_index: Option<usize>,
    /// A failed row of the key is newer than it.
    failed_after: bool,
}

/// Decides every row of a chunk from its probe, walking the rows in order: a row's earlier row
/// may be one of this chunk or of the chunk before it (not yet in the table when the probe
/// ran) or the one the probe found.
pub(super) fn decide(jobs: &[NewJob], probed: Probed, context: &mut Context) -> Decisions {
    let options = context.options;
    let run_name = context.run_name.as_str();
    let mut decisions = Decisions {
        rows: Vec::with_capacity(jobs.len()),
        supersede: Vec::new(),
        keyless: Vec::new(),
    };
    let mut current: HashMap<[u8; 16], Recent> = HashMap::new();
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
        let earlier = match current.get(&key).or_else(|| context.recent.get(&key)) {
            Some(recent) => Some(Earlier {
                equal: hash.is_some() && recent.hash == hash,
                pending: true,
                run: None,
                line: recent.line,
                chunk_index: recent.chunk_index,
                failed_after: false,
            }),
            None => probed
                .found
                .get(index)
                .copied()
                .flatten()
                .map(|found| Earlier {
                    equal: hash.is_some() && found.equal,
                    pending: found.pending,
                    run: Some(found.run),
                    line: found.line,
                    chunk_index: None,
                    failed_after: found.failed_after,
                }),
        };
        if options.skip_unchanged
            && let Some(earlier) = earlier
            && earlier.equal
        {
            let line = earlier.line;
            let run = match earlier.run {
                None => run_name,
                Some(id) => context.run_names.get(&id).map_or("?", String::as_str),
            };
            let reason = format!("unchanged since run {run}, line {line}");
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
            && let Some(earlier) = earlier
            && earlier.pending
        {
            let reason = format!("superseded by run {run_name}, line {}", job.line);
            match earlier.chunk_index {
                Some(i) => decisions.rows[i] = (Kind::Superseded, Some(reason)),
                None => decisions.supersede.push((
                    job.ticket_id.clone().unwrap_or_default(),
                    key,
                    reason,
                )),
            }
        }
        decisions.rows.push((Kind::Pending, None));
        if let Some(written) = &mut context.written {
            written.insert(&key);
        }
        current.insert(
            key,
            Recent {
                hash,
                line: job.line,
                chunk_index: Some(index),
            },
        );
    }
    for recent in current.values_mut() {
        recent.chunk_index = None;
    }
    context.recent = current;
    decisions
}

/// Skips the earlier pending rows a chunk superseded, those up to `upto` (the last id before
/// the chunk's own); returns how many changed.
pub(super) async fn supersede(
    conn: &mut PoolConnection<Sqlite>,
    rows: &[Supersede],
    upto: i64,
) -> Result<u64, StoreError> {
    let mut changed = 0;
    for part in rows.chunks(SUPERSEDE_ROWS) {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(SUPERSEDE_SQL.as_str()));
        for (ticket, key, reason) in part {
            query = query
                .bind(ticket.as_str())
                .bind(key.to_vec())
                .bind(reason.as_str());
        }
        for _ in part.len()..SUPERSEDE_ROWS {
            query = query
                .bind(None::<&str>)
                .bind(None::<Vec<u8>>)
                .bind(None::<String>);
        }
        changed += query
            .bind(now_ms())
            .bind(upto)
            .execute(&mut **conn)
            .await?
            .rows_affected();
    }
    Ok(changed)
}

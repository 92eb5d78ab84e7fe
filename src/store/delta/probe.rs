//! The sync-key probe of a chunk (see the parent module): a statement on the reader's connection
//! for the keys it can answer and one on the writer's for the others, each one packed answer.

use std::sync::LazyLock;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::{Context, NewJob, StoreError};

/// The newest counting row of a probed row's key in the table, as the probe packs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Found {
    /// Its payload hash is the probed row's.
    pub(super) equal: bool,
    pub(super) pending: bool,
    /// A failed row of the key is newer than it.
    pub(super) failed_after: bool,
    pub(super) run: i64,
    pub(super) line: i64,
}

/// What the probe of one chunk found.
#[derive(Debug, Default)]
pub(in crate::store) struct Probed {
    /// Per row of the chunk (empty when nothing was probed).
    pub(super) found: Vec<Option<Found>>,
}

/// The probe: for each row of a chunk, the newest counting row of its (ticket, key), packed
/// into one integer, the chunk's answers in one comma-separated text (one result row: sqlx
/// hands each result row from its SQLite thread to the runtime). The probe compares the
/// payload hashes itself, so only flags and the row's place come back: `line * 2^24 + run id *
/// 8 + equal * 4 + pending * 2 + failed after`, 0 for none. Run ids from 2^21 up take the
/// wide form, `line,rest`, as does a chunk whose line overflows (SQLite then answers a real
/// number). The row found answers from where the index walk left its cursor (a join on its
/// id read the table a second time); the keys come sorted by ticket, so consecutive probes
/// descend to neighbouring entries.
///
/// The keys go in as three values, not three per row: the tickets as one JSON array, and the
/// sync keys and payload digests as one blob of 32 bytes a row (a row without a digest gives
/// zeros; its `equal` flag is not read). Bound one by one, each value was an allocation on
/// the runtime, a copy in SQLite and two frees on SQLite's thread: about a third less probe
/// time this way (Python's sqlite3 on a copy of night 1's database, 300,000 keys, 0.87 s
/// against 1.25 s). Indexed by [event keys][failed rows in the database][wide].
pub(in crate::store) static PROBES: [[[LazyLock<String>; 2]; 2]; 2] = [
    [
        [
            LazyLock::new(|| probe_sql(&TICKET_WALK, "0", false)),
            LazyLock::new(|| probe_sql(&TICKET_WALK, "0", true)),
        ],
        [
            LazyLock::new(|| probe_sql(&TICKET_WALK, TICKET_FAILED_AFTER, false)),
            LazyLock::new(|| probe_sql(&TICKET_WALK, TICKET_FAILED_AFTER, true)),
        ],
    ],
    [
        [
            LazyLock::new(|| probe_sql(&EVENT_SEEK, "0", false)),
            LazyLock::new(|| probe_sql(&EVENT_SEEK, "0", true)),
        ],
        [
            LazyLock::new(|| probe_sql(&EVENT_SEEK, EVENT_FAILED_AFTER, false)),
            LazyLock::new(|| probe_sql(&EVENT_SEEK, EVENT_FAILED_AFTER, true)),
        ],
    ],
];

/// Run ids from this one up do not fit the packed answer (see [`PROBES`]).
pub(super) const PACKED_RUNS: i64 = 1 << 21;

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

fn probe_sql(reach: &Reach, failed_after: &str, wide: bool) -> String {
    let flags = format!(
        "p.run_id * 8 + (p.payload_hash IS k.hash) * 4 + (p.state = 'pending') * 2
         + {failed_after}"
    );
    let (value, none) = if wide {
        (format!("p.line || ',' || ({flags})"), "'0,0'")
    } else {
        (format!("p.line * 16777216 + {flags}"), "0")
    };
    format!(
        "WITH k AS (SELECT t.value AS ticket, substr(?2, t.key * 32 + 1, 16) AS key,
                           substr(?2, t.key * 32 + 17, 16) AS hash
                    FROM json_each(?1) t)
         SELECT coalesce(group_concat(coalesce((
             SELECT {value}
             FROM jobs p INDEXED BY {index}
             WHERE {key}
               AND p.state IN ('succeeded', 'pending', 'in_flight')
               AND (p.state != 'succeeded' OR ifnull(p.updated_at, 0) >= ?3)
             ORDER BY p.id DESC LIMIT 1), {none}), ','), '')
         FROM k",
        index = reach.index,
        key = reach.key,
    )
}

/// A connection beside the writer's that probes sync keys while the writer's inserts: its
/// own SQLite thread, so the two statements run at once. It is a task that answers probes in
/// the order asked, so a chunk's probe can be asked while the one before is still running.
/// It sees only committed rows: keys of rows the writer's open transaction holds are probed
/// on the writer's connection (see [`Context::written`]).
pub(in crate::store) struct Reader {
    requests: mpsc::UnboundedSender<Request>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

/// What the reader is asked.
enum Request {
    /// A probe statement and where its answer goes.
    Probe {
        probe: Probe,
        answer: oneshot::Sender<Result<String, sqlx::Error>>,
    },
    /// The names of runs, by id (a JSON array).
    Names {
        ids: String,
        answer: oneshot::Sender<Result<Vec<(i64, String)>, sqlx::Error>>,
    },
}

impl Reader {
    /// Opens the connection (reading only, see [`READER_PRAGMAS`]) and starts the task
    /// answering on it.
    pub async fn open(options: &SqliteConnectOptions) -> Result<Self, StoreError> {
        let mut conn = options.connect().await?;
        sqlx::raw_sql(READER_PRAGMAS).execute(&mut conn).await?;
        let (requests, mut asked) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(request) = asked.recv().await {
                // sqlx resets a statement once its answer is read, so the reader holds no
                // snapshot (nor WAL frames from a checkpoint) between requests.
                match request {
                    Request::Probe { probe, answer } => {
                        let _ = answer.send(probe.run(&mut conn).await);
                    }
                    Request::Names { ids, answer } => {
                        let _ = answer.send(run_names(&mut conn, ids).await);
                    }
                }
            }
            // It only read: nothing to lose if closing fails.
            let _ = conn.close().await;
        });
        Ok(Self { requests, task })
    }

    /// Closes the connection once the probes asked are answered.
    pub async fn close(self) {
        drop(self.requests);
        let _ = self.task.await;
    }

    fn probe(&self, probe: Probe) -> Answer<String> {
        let (answer, receiver) = oneshot::channel();
        let _ = self.requests.send(Request::Probe { probe, answer });
        receiver
    }

    async fn names(&self, ids: String) -> Result<Vec<(i64, String)>, StoreError> {
        let (answer, receiver) = oneshot::channel();
        let _ = self.requests.send(Request::Names { ids, answer });
        answered(receiver).await
    }
}

/// The reader's answer to come.
type Answer<T> = oneshot::Receiver<Result<T, sqlx::Error>>;

async fn answered<T>(answer: Answer<T>) -> Result<T, StoreError> {
    match answer.await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StoreError::Query(sqlx::Error::Protocol(
            "the sync-key reader stopped before it answered".into(),
        ))),
    }
}

/// The reader's settings: a page cache of 2 MiB, and no writing. Its reads are index
/// descents at random tickets and the rows they find; pages the cache misses come from the OS's
/// cache, and a 32 MiB cache probed no faster (a 1M-row night on tmpfs), so the ingest's peak
/// memory grows by this much only.
const READER_PRAGMAS: &str = "PRAGMA cache_size = -2048; PRAGMA query_only = ON";

/// The names of the runs whose ids are given as a JSON array.
async fn run_names(
    conn: &mut SqliteConnection,
    ids: String,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, name FROM runs WHERE id IN (SELECT value FROM json_each(?))")
        .bind(ids)
        .fetch_all(conn)
        .await
}

/// A chunk's keys, asked: those the writer's connection must answer (the rows of its open
/// transaction may hold them), and the reader's probe of the others, under way.
pub(in crate::store) struct Asked {
    /// Rows of the chunk (indexes) to probe on the writer's connection.
    writer: Vec<usize>,
    /// The reader's probe: the rows it was asked for in the order asked, whether in the wide
    /// form, and its answer to come.
    reader: Option<(Vec<usize>, bool, Answer<String>)>,
}

impl std::fmt::Debug for Asked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asked")
            .field("writer", &self.writer.len())
            .field("reader", &self.reader.as_ref().map(|(rows, ..)| rows.len()))
            .finish()
    }
}

/// Asks for a chunk's keys: those the reader can answer go to it at once (its SQLite thread
/// probes them while the writer's inserts earlier chunks); the others are left for
/// [`answer_writer`]. The rows of the chunk before this one need not be in the table yet
/// (see [`Context::recent`]), nor those decided since the writer's transaction began (they are
/// in [`Context::written`], and keys of those go to the writer).
pub(in crate::store) fn ask(
    jobs: &[NewJob],
    context: &mut Context,
    reader: Option<&Reader>,
) -> Asked {
    let mut asked = Asked {
        writer: Vec::new(),
        reader: None,
    };
    let mut keys: Vec<Lookup> = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        let (Some(key), Some(ticket), None) = (job.sync_key, &job.ticket_id, &job.invalid_reason)
        else {
            continue;
        };
        match &context.seen {
            // A first ingest: only this writer stored rows, and only it sees them all.
            Some(seen) if seen.may_contain(&key) => asked.writer.push(index),
            Some(_) => {}
            None => match (reader, &context.written) {
                (Some(_), Some(written)) if !written.may_contain(&key) => {
                    keys.push((ticket, key, job.payload_hash, index));
                }
                _ => asked.writer.push(index),
            },
        }
    }
    // Rows earlier in this chunk are found by `decide`, not by the probe.
    if let Some(seen) = &mut context.seen {
        for job in jobs {
            if let (Some(key), None) = (&job.sync_key, &job.invalid_reason) {
                seen.insert(key);
            }
        }
    }
    if let Some(reader) = reader
        && !keys.is_empty()
    {
        // In the index's order (SQLite compares text bytewise, as `str` does).
        keys.sort_unstable();
        let wide = context.wide;
        let answer = reader.probe(Probe::new(&keys, context, wide));
        let rows = keys.iter().map(|&(.., index)| index).collect();
        asked.reader = Some((rows, wide, answer));
    }
    asked
}

/// Probes, on the writer's connection, the keys [`ask`] left to it. Call before that
/// connection inserts the chunk before this one.
pub(in crate::store) async fn answer_writer(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
    asked: &Asked,
    context: &mut Context,
    probed: &mut Probed,
) -> Result<(), StoreError> {
    if asked.writer.is_empty() {
        return Ok(());
    }
    let mut keys = lookups(jobs, &asked.writer);
    keys.sort_unstable();
    let rows: Vec<usize> = keys.iter().map(|&(.., index)| index).collect();
    let wide = context.wide;
    let answer = Probe::new(&keys, context, wide).run(conn).await?;
    settle(
        Via::Writer(conn),
        jobs,
        &rows,
        answer,
        wide,
        context,
        probed,
    )
    .await
}

/// Waits for the reader's answer to [`ask`].
pub(in crate::store) async fn answer_reader(
    jobs: &[NewJob],
    asked: Asked,
    reader: Option<&Reader>,
    context: &mut Context,
    probed: &mut Probed,
) -> Result<(), StoreError> {
    let (Some((rows, wide, answer)), Some(reader)) = (asked.reader, reader) else {
        return Ok(());
    };
    let answer = answered(answer).await?;
    settle(
        Via::Reader(reader),
        jobs,
        &rows,
        answer,
        wide,
        context,
        probed,
    )
    .await
}

/// The connection a probe's answer came from, which is asked again if need be.
enum Via<'c> {
    Writer(&'c mut SqliteConnection),
    Reader(&'c Reader),
}

impl Via<'_> {
    async fn probe(
        &mut self,
        keys: &[Lookup<'_>],
        context: &Context,
        wide: bool,
    ) -> Result<String, StoreError> {
        let probe = Probe::new(keys, context, wide);
        match self {
            Via::Writer(conn) => Ok(probe.run(conn).await?),
            Via::Reader(reader) => answered(reader.probe(probe)).await,
        }
    }

    async fn names(&mut self, ids: String) -> Result<Vec<(i64, String)>, StoreError> {
        match self {
            Via::Writer(conn) => Ok(run_names(conn, ids).await?),
            Via::Reader(reader) => reader.names(ids).await,
        }
    }
}

/// Reads a probe's answer for `rows` of the chunk (in the order asked) into `probed`, asking
/// again in the wide form when a value did not fit the packed one, and names the runs found.
async fn settle(
    mut via: Via<'_>,
    jobs: &[NewJob],
    rows: &[usize],
    answer: String,
    wide: bool,
    context: &mut Context,
    probed: &mut Probed,
) -> Result<(), StoreError> {
    let found = match decode(&answer, rows.len(), wide) {
        Some(found) => found,
        // A line past the packed form's range: ask again, wide, and for the rest of the
        // transaction.
        None if !wide => {
            context.wide = true;
            let keys = lookups(jobs, rows);
            let answer = via.probe(&keys, context, true).await?;
            decode(&answer, rows.len(), true).ok_or_else(|| not_a_list(&answer))?
        }
        None => return Err(not_a_list(&answer)),
    };
    if probed.found.is_empty() {
        probed.found = vec![None; jobs.len()];
    }
    let mut unnamed = Vec::new();
    for (&index, found) in rows.iter().zip(found) {
        if let Some(found) = found
            && !context.run_names.contains_key(&found.run)
        {
            unnamed.push(found.run);
        }
        probed.found[index] = found;
    }
    if !unnamed.is_empty() {
        unnamed.sort_unstable();
        unnamed.dedup();
        let names = via
            .names(serde_json::to_string(&unnamed).unwrap_or_default())
            .await?;
        context.run_names.extend(names);
    }
    Ok(())
}

fn not_a_list(answer: &str) -> StoreError {
    StoreError::Query(sqlx::Error::Protocol(format!(
        "the sync-key probe answered what is not its list: {answer:.200}"
    )))
}

/// A row to look up: its ticket, sync key, payload hash and index in the chunk.
type Lookup<'a> = (&'a str, [u8; 16], Option<[u8; 16]>, usize);

/// The lookups of some rows of a chunk, in the order given.
fn lookups<'a>(jobs: &'a [NewJob], rows: &[usize]) -> Vec<Lookup<'a>> {
    rows.iter()
        .filter_map(|&index| {
            let job = &jobs[index];
            Some((
                job.ticket_id.as_deref()?,
                job.sync_key?,
                job.payload_hash,
                index,
            ))
        })
        .collect()
}

/// A probe statement for some keys (any number: they go in as three values), ready to run on
/// either connection.
struct Probe {
    sql: &'static str,
    /// The tickets as a JSON array (see [`PROBES`]).
    tickets: String,
    /// The sync keys and payload digests, 32 bytes a key.
    keys: Vec<u8>,
    since_ms: i64,
}

impl Probe {
    fn new(part: &[Lookup<'_>], context: &Context, wide: bool) -> Self {
        let tickets: Vec<&str> = part.iter().map(|(ticket, ..)| *ticket).collect();
        let mut keys = Vec::with_capacity(part.len() * 32);
        for (_, key, hash, _) in part {
            keys.extend_from_slice(key);
            keys.extend_from_slice(&hash.unwrap_or_default());
        }
        Self {
            sql: PROBES[usize::from(context.options.event_keys)][usize::from(context.failed_rows)]
                [usize::from(wide)]
            .as_str(),
            // A list of strings always serializes.
            tickets: serde_json::to_string(&tickets).unwrap_or_default(),
            keys,
            since_ms: context.since_ms,
        }
    }

    /// The probe's text answer.
    async fn run(self, conn: &mut SqliteConnection) -> Result<String, sqlx::Error> {
        let (answer,) = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(self.sql))
            .bind(self.tickets)
            .bind(self.keys)
            .bind(self.since_ms)
            .fetch_one(conn)
            .await?;
        Ok(answer)
    }
}

/// Reads a probe's answer (see [`PROBES`]) for its `rows` keys; `None` when it is not `rows`
/// packed values.
fn decode(answer: &str, rows: usize, wide: bool) -> Option<Vec<Option<Found>>> {
    let mut numbers = answer.split(',').map(|n| n.parse::<i64>().ok());
    let mut found = Vec::with_capacity(rows);
    for _ in 0..rows {
        let (line, rest) = if wide {
            (numbers.next()??, numbers.next()??)
        } else {
            let packed = numbers.next()??;
            (packed >> 24, packed & 0xff_ffff)
        };
        found.push((rest != 0).then_some(Found {
            equal: rest & 4 != 0,
            pending: rest & 2 != 0,
            failed_after: rest & 1 != 0,
            run: rest >> 3,
            line,
        }));
    }
    numbers.next().is_none().then_some(found)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn probe_answers_unpack_and_overflow_asks_again() {
        let packed = (17 << 24) + 5 * 8 + 4 + 1;
        let found = decode(&format!("{packed},0"), 2, false).unwrap();
        let first = found[0].unwrap();
        assert_eq!((first.line, first.run), (17, 5));
        assert!(first.equal && !first.pending && first.failed_after);
        assert!(found[1].is_none());
        // A line past 2^39 makes SQLite answer a real number: the packed read gives up.
        assert!(decode("9.22337203685478e+18,0", 2, false).is_none());
        assert!(decode("0", 2, false).is_none());
        assert!(decode("0,0,0", 2, false).is_none());
        let wide = decode("123456789012345,16777218,0,0", 2, true).unwrap();
        let first = wide[0].unwrap();
        assert_eq!((first.line, first.run), (123_456_789_012_345, 2_097_152));
        assert!(!first.equal && first.pending && !first.failed_after);
        assert!(wide[1].is_none());
    }
}

//! The sync-key probe of a chunk (see the parent module): one statement, one packed answer.

use std::sync::LazyLock;

use sqlx::Sqlite;
use sqlx::pool::PoolConnection;

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

/// Probes the table for the sync keys of a chunk's rows. The rows of the chunk before it need
/// not be in the table yet (see [`Context::recent`]).
pub(in crate::store) async fn probe(
    conn: &mut PoolConnection<Sqlite>,
    jobs: &[NewJob],
    context: &mut Context,
) -> Result<Probed, StoreError> {
    let mut keys: Vec<Lookup> = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        if let (Some(key), Some(ticket), None) = (job.sync_key, &job.ticket_id, &job.invalid_reason)
            && context
                .seen
                .as_ref()
                .is_none_or(|seen| seen.may_contain(&key))
        {
            keys.push((ticket, key, job.payload_hash, index));
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
    let mut probed = Probed::default();
    if keys.is_empty() {
        return Ok(probed);
    }
    probed.found = vec![None; jobs.len()];
    // In the index's order (SQLite compares text bytewise, as `str` does).
    keys.sort_unstable();
    let mut wide = context.wide;
    let answer = loop {
        let answer = probe_keys(conn, &keys, context, wide).await?;
        match decode(&answer, keys.len(), wide) {
            Some(found) => break found,
            // A line past the packed form's range: ask again, wide, and for the rest of the
            // transaction.
            None if !wide => wide = true,
            None => {
                return Err(StoreError::Query(sqlx::Error::Protocol(format!(
                    "the sync-key probe answered what is not its list: {answer:.200}"
                ))));
            }
        }
    };
    context.wide = wide;
    let mut unnamed = Vec::new();
    for (&(_, _, _, index), found) in keys.iter().zip(answer) {
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
        let names: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, name FROM runs WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(serde_json::to_string(&unnamed).unwrap_or_default())
        .fetch_all(&mut **conn)
        .await?;
        context.run_names.extend(names);
    }
    Ok(probed)
}

/// A row to look up: its ticket, sync key, payload hash and index in the chunk.
type Lookup<'a> = (&'a str, [u8; 16], Option<[u8; 16]>, usize);

/// The probe statement for a chunk's rows (any number: they go in as three values); its text
/// answer.
async fn probe_keys(
    conn: &mut PoolConnection<Sqlite>,
    part: &[Lookup<'_>],
    context: &Context,
    wide: bool,
) -> Result<String, StoreError> {
    let sql = &PROBES[usize::from(context.options.event_keys)][usize::from(context.failed_rows)]
        [usize::from(wide)];
    let tickets: Vec<&str> = part.iter().map(|(ticket, ..)| *ticket).collect();
    let mut keys = Vec::with_capacity(part.len() * 32);
    for (_, key, hash, _) in part {
        keys.extend_from_slice(key);
        keys.extend_from_slice(&hash.unwrap_or_default());
    }
    let tickets = serde_json::to_string(&tickets).map_err(|e| {
        StoreError::Query(sqlx::Error::Protocol(format!(
            "the sync-key probe's tickets: {e}"
        )))
    })?;
    let (answer,) = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(tickets)
        .bind(keys)
        .bind(context.since_ms)
        .fetch_one(&mut **conn)
        .await?;
    Ok(answer)
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

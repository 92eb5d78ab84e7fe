//! Claiming rows for sending, each ticket's rows in id order across every run, and putting
//! orphans back.
//!
//! A pending row with `next_attempt_at` NULL is not yet claimable: fresh (never looked at), or
//! parked behind an earlier open (pending or in-flight) row of its ticket in any run. The
//! dispatcher's cursor walks these once per drain, in id order, through `jobs_open_by_run`:
//! each is claimed, or left parked when the row before it in its ticket (`jobs_by_ticket_sent`)
//! is open. A pending row with `next_attempt_at` set is due at that time (a retry, a row put
//! back, a row released) and is found through `jobs_waiting` in time order. When a row stops
//! being open, the `jobs_release_next` trigger (migration 0006) makes the next row of its
//! ticket due, so a parked row costs one probe when parked and one when released, never a
//! rescan by later claims. Neither probe writes: a drain dirties no randomly placed page.
//!
//! A claimed row may bring the rows right behind it in its ticket (a *chain*): the next rows
//! of the ticket in id order, in the same run, pending and not held by a retry time, up to a
//! bound. They are claimed (`in_flight`) in the same transaction, so a crash replays them in
//! id order like any in-flight rows (only the first of them that may have been sent is marked
//! replayed); the engine sends each once the success of the one before it is stored (in the
//! journal of chain steps, [`super::steps`], until the chain ends), and
//! returns the rest unsent at the first answer that is not a success, where they wait behind
//! that row again. One more probe of `jobs_by_ticket_sent` per claimed row: a ticket's history
//! sorted by ticket goes out without a release and a claim between its rows.

use std::collections::HashSet;

use sqlx::Row;

use super::statements::id_list;
use super::{Store, StoreError};

/// Fresh rows one claim looks at, at most, per row asked for: when most rows are parked (a
/// ticket's long history sorted by ticket), the cursor moves on in bounded steps and the
/// claim returns what it found, rather than walking the whole run in one transaction.
const WALK_PER_ROW: i64 = 4;

/// While the walk has rows ahead, at least 1/WALK_SHARE of each claim is left to it.
const WALK_SHARE: i64 = 4;

/// A row claimed for sending: its state is `in_flight` and its attempt counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    pub payload: String,
    /// The attempt number this send is (1 for the first).
    pub attempt: i64,
    /// Whether this row is chained to the row before it in the claim's answer, the row before
    /// it in its ticket: it may be sent only after that one succeeded.
    pub follows: bool,
}

/// Where the dispatcher is in a run's not-yet-claimable rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The highest id the walk has passed.
    pub after_id: i64,
    /// Whether the walk reached the end of the run's rows. Until it has, a claim that returns
    /// nothing does not mean nothing is claimable: claim again.
    pub exhausted: bool,
}

/// "The row before this one in its ticket (the latest earlier row, in any run, that is not
/// skipped) is pending or in flight": one probe of `jobs_by_ticket_sent`, an index no drain
/// writes to (migration 0006). Rows of a ticket are sent in id order, so when that row is done
/// the rows before it are done too.
macro_rules! earlier_row_open {
    () => {
        "coalesce((SELECT e.state IN ('pending', 'in_flight')
          FROM jobs e INDEXED BY jobs_by_ticket_sent
          WHERE e.ticket_id = j.ticket_id AND e.payload IS NOT NULL AND e.id < j.id
            AND e.state <> 'skipped'
          ORDER BY e.id DESC LIMIT 1), 0)"
    };
}

/// Due rows of a run, oldest due first, each with whether it is blocked.
const DUE_SQL: &str = concat!(
    "SELECT j.id, ",
    earlier_row_open!(),
    " FROM jobs j INDEXED BY jobs_waiting
     WHERE j.run_id = ?1 AND j.state = 'pending'
       AND j.next_attempt_at IS NOT NULL AND j.next_attempt_at <= ?2
     ORDER BY j.next_attempt_at, j.id LIMIT ?3"
);

/// The run's pending rows after the cursor, in id order, each with whether it is still
/// unclaimable (`next_attempt_at` NULL) and whether it is blocked. A row right behind an open
/// row of its ticket (the id before it: a history sorted by ticket) is blocked by it without
/// the probe, which would find that row: most rows such a walk passes are those.
const WALK_SQL: &str = concat!(
    "SELECT j.id, j.next_attempt_at IS NULL,
         CASE WHEN EXISTS (SELECT 1 FROM jobs b WHERE b.id = j.id - 1
                             AND b.ticket_id = j.ticket_id AND b.payload IS NOT NULL
                             AND b.state IN ('pending', 'in_flight'))
         THEN 1 ELSE ",
    earlier_row_open!(),
    " END FROM jobs j INDEXED BY jobs_open_by_run
     WHERE j.run_id = ?1 AND j.state IN ('pending', 'in_flight') AND j.state = 'pending'
       AND j.id > ?2
     ORDER BY j.id LIMIT ?3"
);

/// The rows right behind each claimed row in its ticket that may go out after it (a chain),
/// each with its head, nearest first. A step follows the ticket's next row that is not
/// skipped: the next id when that is one (a history sorted by ticket), else one probe of
/// `jobs_by_ticket_sent`. The chain ends at a row of another run, one not pending, one held
/// by a retry time, or the bound ?2.
const CHAIN_SQL: &str = "WITH RECURSIVE chain(head, id, ticket, depth) AS (
        SELECT j.id, j.id, j.ticket_id, 1 FROM json_each(?1) h JOIN jobs j ON j.id = h.value
        UNION ALL
        SELECT c.head, n.id, c.ticket, c.depth + 1
        FROM chain c JOIN jobs n ON n.id = coalesce(
            (SELECT x.id FROM jobs x
             WHERE x.id = c.id + 1 AND x.ticket_id = c.ticket AND x.payload IS NOT NULL
               AND x.state <> 'skipped'),
            (SELECT x.id FROM jobs x INDEXED BY jobs_by_ticket_sent
             WHERE x.ticket_id = c.ticket AND x.payload IS NOT NULL AND x.id > c.id
               AND x.state <> 'skipped'
             ORDER BY x.id LIMIT 1))
        WHERE c.depth < ?2 AND n.run_id = ?3 AND n.state = 'pending'
          AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= ?4))
    SELECT head, id FROM chain WHERE depth > 1";

impl Store {
    /// Puts rows left `in_flight` by a runner that died back to `pending`, due at once and
    /// marked replayed (they may have reached Kapture). Returns how many. First the successes
    /// it recorded in the journal of chain steps are stored on their rows (in every run: only
    /// one runner drains at a time). A row whose earlier row in its ticket is still open was
    /// never sent (the rest of a chain): it goes back unmarked.
    pub async fn requeue_orphans(&self, run_id: i64, now_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        super::steps::fold_left(&mut tx, now_ms).await?;
        let done = sqlx::query(concat!(
            "UPDATE jobs AS j SET state = 'pending', next_attempt_at = 0,
                 replayed = CASE WHEN ",
            earlier_row_open!(),
            " THEN j.replayed ELSE 1 END,
                 attempts = max(j.attempts - 1, 0), updated_at = ?
             WHERE j.id IN (SELECT id FROM jobs INDEXED BY jobs_open_by_run
                            WHERE run_id = ? AND state IN ('pending', 'in_flight')
                              AND state = 'in_flight')"
        ))
        .bind(now_ms)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Claims up to `limit` rows of a run: due rows first (they are older), then rows after
    /// the cursor. A row is claimed only while no earlier row of its ticket, in any run, is
    /// pending or in flight; a blocked row is parked until that row finishes. Each claimed
    /// row brings up to `chain - 1` rows right behind it in its ticket (see the module doc),
    /// which do not count against `limit`. Rows are returned in id order of the first row of
    /// each chain, a chain's rows together in id order, the later ones marked
    /// [`Claimed::follows`]. An empty answer with `cursor.exhausted` false means "claim
    /// again": the walk moved on but found only parked rows.
    pub async fn claim(
        &self,
        run_id: i64,
        cursor: &mut Cursor,
        limit: i64,
        chain: usize,
        now_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        // IMMEDIATE: the reads decide the writes, so no other process may write in between.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut take: Vec<i64> = Vec::new();
        let mut park: Vec<i64> = Vec::new();
        let due: Vec<(i64, bool)> = sqlx::query_as(DUE_SQL)
            .bind(run_id)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        // Due rows first (they are older), but while the walk has rows ahead a share of the
        // claim is kept for it: the walk is what starts tickets not yet started, and with every
        // claim filled by released rows of the tickets already going, a history sorted by
        // ticket would run on the first few tickets only.
        let reserve = if cursor.exhausted {
            0
        } else {
            limit / WALK_SHARE
        };
        let mut due = due.into_iter().peekable();
        let mut take_due = |take: &mut Vec<i64>, park: &mut Vec<i64>, upto: i64| {
            while (take.len() as i64) < upto {
                let Some((id, blocked)) = due.next() else {
                    break;
                };
                if blocked {
                    park.push(id);
                } else {
                    take.push(id);
                }
            }
        };
        take_due(&mut take, &mut park, limit - reserve);
        let budget = limit.max(1) * WALK_PER_ROW;
        let mut walked = 0;
        while (take.len() as i64) < limit && !cursor.exhausted && walked < budget {
            let room = limit - take.len() as i64;
            let window = room.max(64).min(budget - walked);
            let rows: Vec<(i64, bool, bool)> = sqlx::query_as(WALK_SQL)
                .bind(run_id)
                .bind(cursor.after_id)
                .bind(window)
                .fetch_all(&mut *tx)
                .await?;
            if (rows.len() as i64) < window {
                cursor.exhausted = true;
            }
            for (id, unclaimable, blocked) in rows {
                walked += 1;
                cursor.after_id = id;
                // A due row is the due query's; a blocked one stays parked (NULL) until the
                // row before it finishes.
                if unclaimable && !blocked {
                    take.push(id);
                    if take.len() as i64 == limit {
                        // Rows after this one were read but not passed: the cursor stops here.
                        cursor.exhausted = false;
                        break;
                    }
                }
            }
        }
        // What the walk left of the claim goes to the rest of the due rows.
        take_due(&mut take, &mut park, limit);
        // Each claimed row's chain: the rows behind it, taken with it.
        let mut head_of: Vec<(i64, i64)> = take.iter().map(|&id| (id, id)).collect();
        if chain > 1 && !take.is_empty() {
            let behind: Vec<(i64, i64)> = sqlx::query_as(CHAIN_SQL)
                .bind(id_list(&take))
                .bind(chain as i64)
                .bind(run_id)
                .bind(now_ms)
                .fetch_all(&mut *tx)
                .await?;
            if !behind.is_empty() {
                // A row right behind a claimed one is blocked by it, so no chain holds a row
                // the due rows or the walk took; the set keeps that true whatever happens.
                let mut taken: HashSet<i64> = take.iter().copied().collect();
                for (head, id) in behind {
                    if taken.insert(id) {
                        take.push(id);
                        head_of.push((head, id));
                    }
                }
                // A due row that was blocked (by its head) goes with its chain instead.
                park.retain(|id| !taken.contains(id));
            }
        }
        if !park.is_empty() {
            sqlx::query(
                "UPDATE jobs SET next_attempt_at = NULL
                 WHERE id IN (SELECT value FROM json_each(?)) AND state = 'pending'",
            )
            .bind(id_list(&park))
            .execute(&mut *tx)
            .await?;
        }
        let mut claimed = Vec::with_capacity(take.len());
        if !take.is_empty() {
            let rows = sqlx::query(
                "UPDATE jobs SET state = 'in_flight', attempts = attempts + 1,
                     next_attempt_at = NULL, updated_at = ?1
                 WHERE id IN (SELECT value FROM json_each(?2)) AND state = 'pending'
                 RETURNING id, run_id, ticket_id, payload, attempts, replayed",
            )
            .bind(now_ms)
            .bind(id_list(&take))
            .fetch_all(&mut *tx)
            .await?;
            claimed.extend(rows.iter().map(claimed_row));
        }
        tx.commit().await?;
        // Chains together, by their first row, each in id order.
        head_of.sort_unstable();
        let mut by_id: std::collections::HashMap<i64, Claimed> =
            claimed.into_iter().map(|c| (c.id, c)).collect();
        let mut ordered = Vec::with_capacity(by_id.len());
        let mut previous_head = None;
        for (head, id) in head_of {
            let Some(mut row) = by_id.remove(&id) else {
                continue;
            };
            row.follows = previous_head == Some(head);
            previous_head = Some(head);
            ordered.push(row);
        }
        Ok(ordered)
    }

    /// Whether any row of the run is due now or later, and when the next one that is not yet
    /// due falls due (unix ms). Parked rows do not count: each waits for a row that is in
    /// flight (its outcome wakes the dispatcher) or belongs to a run this drain does not
    /// send, so these two answers tell the dispatcher whether it is done and how long it may
    /// sleep. Two index probes, whatever the number of waiting rows.
    pub async fn waiting(
        &self,
        run_id: i64,
        now_ms: i64,
    ) -> Result<(bool, Option<i64>), StoreError> {
        let (any, next): (bool, Option<i64>) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_waiting
                            WHERE run_id = ?2 AND state = 'pending'
                              AND next_attempt_at IS NOT NULL),
                    (SELECT min(next_attempt_at) FROM jobs INDEXED BY jobs_waiting
                     WHERE run_id = ?2 AND state = 'pending'
                       AND next_attempt_at IS NOT NULL AND next_attempt_at > ?1)",
        )
        .bind(now_ms)
        .bind(run_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((any, next))
    }
}

fn claimed_row(row: &sqlx::sqlite::SqliteRow) -> Claimed {
    Claimed {
        id: row.get(0),
        payload: row.get::<Option<String>, _>(3).unwrap_or_default(),
        attempt: row.get(4),
        follows: false,
    }
}

#[cfg(test)]
mod tests;

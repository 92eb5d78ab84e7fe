//! Storing request outcomes: one transaction per batch, set-wise statements.
//!
//! sqlx pays a thread hand-off per statement, so a batch of results is written with one
//! multi-row INSERT into `attempts` and one `UPDATE ... FROM (VALUES ...)` into `jobs`,
//! whatever mix of outcomes it holds. A row is completed only while it is still `in_flight`
//! (the claim still matches).
//!
//! Each batch also adds its results to `run_pace` (migration 0009), one upsert per run, so
//! `status` reads a run's pace from a few rows.
//!
//! An outcome that ends a row (succeeded, failed) releases the next row of its ticket, in any
//! run, in the same transaction: the `jobs_release_next` trigger of migration 0006 finds it with
//! one probe of `jobs_by_ticket_sent`, so rows waiting on their ticket are never rescanned.

use std::sync::LazyLock;

use super::statements::{ROWS_PER_STATEMENT, STATEMENT_ROWS, id_list, sized, values_sql};
use super::steps::{self, Entry};
use super::{Store, StoreError};

/// The attempts INSERT for each statement size. Padding rows (all NULL) are filtered out.
static INSERT_ATTEMPTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    STATEMENT_ROWS
        .iter()
        .map(|&rows| {
            values_sql(
                "INSERT INTO attempts (job_id, attempt, started_at, duration_ms, http_status, \
                 class, in_doubt, excerpt) SELECT * FROM (VALUES ",
                rows,
                8,
                ") WHERE column1 IS NOT NULL",
            )
        })
        .collect()
});

/// The jobs UPDATE for each statement size. Padding rows have no id and match no job.
/// `charge` is 1 when the attempt counts, 0 when the claim's count is given back.
static UPDATE_JOBS: LazyLock<Vec<String>> = LazyLock::new(|| {
    STATEMENT_ROWS
        .iter()
        .map(|&rows| {
            values_sql(
                "WITH r(id, state, charge, next_at, class, message, status, response) AS (VALUES ",
                rows,
                8,
                ") UPDATE jobs SET state = r.state, attempts = jobs.attempts - 1 + r.charge,
                   next_attempt_at = r.next_at, error_class = r.class, error_message = r.message,
                   http_status = r.status, response = coalesce(r.response, jobs.response),
                   updated_at = ?
                 FROM r WHERE jobs.id = r.id AND jobs.state = 'in_flight'",
            )
        })
        .collect()
});

/// What happens to a row after a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Applied: keep the ticket snapshot Kapture returned.
    Succeeded { response: Option<String> },
    /// Permanent: rejected, or attempts used up.
    Failed { class: String, message: String },
    /// Try again at `at_ms`; the attempt counts.
    Retry {
        at_ms: i64,
        class: String,
        message: String,
    },
    /// Back to pending at `at_ms` without using up an attempt (throttled, halted, stopped
    /// before sending).
    Requeue {
        at_ms: i64,
        class: Option<String>,
        message: Option<String>,
    },
}

/// One request's record for the attempts table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub started_ms: i64,
    pub duration_ms: i64,
    pub http_status: Option<u16>,
    pub class: &'static str,
    pub in_doubt: bool,
    /// A bounded excerpt of the response (empty: none kept); never the token.
    pub excerpt: String,
}

/// The outcome of one claimed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub job_id: i64,
    pub http_status: Option<u16>,
    pub next: Next,
    /// The request sent, when one was.
    pub attempt: Option<AttemptRecord>,
}

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

impl Store {
    /// Writes a batch of outcomes in one transaction. Returns how many rows changed state
    /// (rows no longer `in_flight` are left alone).
    pub async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<u64, StoreError> {
        self.record(Batch {
            outcomes,
            ..Batch::default()
        })
        .await
    }

    /// Writes a drain writer's batch in one transaction: the attempts of its outcomes and
    /// steps, the steps appended to the journal, the folded entries and the outcomes stored on
    /// their rows, the journal's folded prefix dropped. Returns how many rows changed state.
    pub async fn record(&self, batch: Batch<'_>) -> Result<u64, StoreError> {
        if batch.outcomes.is_empty() && batch.steps.is_empty() && batch.fold.is_empty() {
            return Ok(0);
        }
        let now = super::now_ms();
        let mut tx = self.pool.begin().await?;
        let attempts: Vec<(i64, &AttemptRecord)> = batch
            .outcomes
            .iter()
            .chain(batch.steps.iter().map(|s| &s.outcome))
            .filter_map(|o| o.attempt.as_ref().map(|a| (o.job_id, a)))
            .collect();
        for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
            let (sql, padding) = sized(&INSERT_ATTEMPTS, chunk.len());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (job_id, a) in chunk {
                query = query
                    .bind(*job_id)
                    .bind(a.attempt)
                    .bind(a.started_ms)
                    .bind(a.duration_ms)
                    .bind(a.http_status.map(i64::from))
                    .bind(a.class)
                    .bind(a.in_doubt)
                    .bind((!a.excerpt.is_empty()).then_some(a.excerpt.as_str()));
            }
            query = pad(query, padding);
            query.execute(&mut *tx).await?;
        }
        let entries: Vec<Entry<'_>> = batch
            .steps
            .iter()
            .map(|step| Entry {
                seq: step.seq,
                job_id: step.outcome.job_id,
                attempt: step.outcome.attempt.as_ref().map_or(0, |a| a.attempt),
                http_status: step.outcome.http_status.map(i64::from),
                response: match &step.outcome.next {
                    Next::Succeeded { response } => response.as_deref(),
                    _ => None,
                },
            })
            .collect();
        steps::insert(&mut tx, &entries).await?;
        // Folded before the outcomes: a chain's last row is stored after the rows before it,
        // as when each was stored on its own.
        let mut changed = steps::fold(&mut tx, batch.fold, now).await?;
        for chunk in batch.outcomes.chunks(ROWS_PER_STATEMENT) {
            let (sql, padding) = sized(&UPDATE_JOBS, chunk.len());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for outcome in chunk {
                let (state, charge, next_at, class, message, response) = match &outcome.next {
                    Next::Succeeded { response } => {
                        ("succeeded", 1, None, None, None, response.as_deref())
                    }
                    Next::Failed { class, message } => (
                        "failed",
                        1,
                        None,
                        Some(class.as_str()),
                        Some(message.as_str()),
                        None,
                    ),
                    Next::Retry {
                        at_ms,
                        class,
                        message,
                    } => (
                        "pending",
                        1,
                        Some(*at_ms),
                        Some(class.as_str()),
                        Some(message.as_str()),
                        None,
                    ),
                    Next::Requeue {
                        at_ms,
                        class,
                        message,
                    } => (
                        "pending",
                        0,
                        Some(*at_ms),
                        class.as_deref(),
                        message.as_deref(),
                        None,
                    ),
                };
                query = query
                    .bind(outcome.job_id)
                    .bind(state)
                    .bind(charge)
                    .bind(next_at)
                    .bind(class)
                    .bind(message)
                    .bind(outcome.http_status.map(i64::from))
                    .bind(response);
            }
            changed += pad(query, padding)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        // Rows changed and rows finished, per run, for `run_pace`: summed by SQLite from the
        // rows just written (their `updated_at` is this batch's), not returned row by row:
        // sqlx hands every result row from its SQLite thread to the runtime, a tenth of a fast
        // drain's time. Folded rows count when folded; journaled ones when their chain ends.
        if changed > 0 {
            let ids = id_list(
                &batch
                    .outcomes
                    .iter()
                    .map(|o| o.job_id)
                    .chain(batch.fold.iter().map(|&(_, job_id)| job_id))
                    .collect::<Vec<i64>>(),
            );
            sqlx::query(
                "INSERT INTO run_pace (run_id, second, finished, first_finished, last_change)
                 SELECT run_id, ?2 / 1000, sum(state IN ('succeeded', 'failed')),
                        iif(sum(state IN ('succeeded', 'failed')) > 0, ?2, NULL), ?2
                 FROM jobs WHERE id IN (SELECT value FROM json_each(?1)) AND updated_at = ?2
                 GROUP BY run_id
                 ON CONFLICT (run_id, second) DO UPDATE SET
                     finished = finished + excluded.finished,
                     first_finished = coalesce(first_finished, excluded.first_finished),
                     last_change = max(last_change, excluded.last_change)",
            )
            .bind(ids)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        steps::drop_below(&mut tx, batch.folded_below).await?;
        tx.commit().await?;
        Ok(changed)
    }
}

/// Binds `rows` padding rows of 8 NULLs.
fn pad(
    mut query: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    rows: usize,
) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for _ in 0..rows * 8 {
        query = query.bind(None::<i64>);
    }
    query
}

#[cfg(test)]
mod tests;

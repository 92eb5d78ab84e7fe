//! Time series for reports, aggregated in SQL per time bucket from the attempts table.
//!
//! Every query is bounded by a time window (`attempts_by_time`) or by the failed rows
//! (`jobs_settled`); none reads one row per job into memory.

use super::settings::RunSet;
use super::{JobState, Store, StoreError};

/// The time buckets a series is cut into: `[origin + k * width, origin + (k + 1) * width)`,
/// for attempts started in `[from, to]`, all in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub from: i64,
    pub to: i64,
    pub origin: i64,
    pub width: i64,
}

/// The attempt classes a report counts, as the engine stores them; `success` first, as
/// [`Store::attempt_classes`] counts it as what the others leave.
pub const CLASSES: [&str; 7] = [
    "success",
    "rejected",
    "transient",
    "transient_in_doubt",
    "throttled",
    "auth",
    "forbidden",
];

/// The duration bin of an attempt, the SQL twin of [`latency_bin`]: the duration rounded down
/// to within 10% (1 ms steps below 100 ms, 10 ms below 1 s, 100 ms below 10 s, whole seconds
/// above), so percentiles come from a small histogram.
const BIN_SQL: &str = "CASE WHEN a.duration_ms < 100 THEN a.duration_ms
                            WHEN a.duration_ms < 1000 THEN a.duration_ms / 10 * 10
                            WHEN a.duration_ms < 10000 THEN a.duration_ms / 100 * 100
                            ELSE a.duration_ms / 1000 * 1000 END";

/// The bin [`AttemptCell::bin_ms`] puts a duration in.
pub fn latency_bin(ms: i64) -> i64 {
    match ms {
        ..100 => ms,
        100..1000 => ms / 10 * 10,
        1000..10000 => ms / 100 * 100,
        _ => ms / 1000 * 1000,
    }
}

/// The join that finds an attempt's run, when only some runs are wanted. The queries name
/// `attempts_by_time`: left to itself SQLite walked the run's jobs for every bucket (the
/// whole run once per bucket: 15 s instead of a fraction of one on a 33k-row night).
fn join_for(runs: Option<&RunSet>) -> &'static str {
    match runs {
        Some(_) => "JOIN jobs j ON j.id = a.job_id",
        None => "",
    }
}

/// The run filter (bound as `?3`), or a no-op that still uses `?3`.
fn filter_for(runs: Option<&RunSet>) -> &'static str {
    match runs {
        Some(_) => "AND j.run_id IN (SELECT value FROM json_each(?3))",
        None => "AND ?3 IS NULL",
    }
}

impl Store {
    /// The first and last attempt start of the whole database: two index probes (one
    /// `min(), max()` query would scan the whole index).
    pub async fn attempt_span(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let (first, last): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT min(started_at) FROM attempts),
                        (SELECT max(started_at) FROM attempts)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(first.zip(last))
    }

    /// Requests per class started in `[from, to)`, in the order of [`CLASSES`] plus a last
    /// count of any other class. `runs: None` takes every run (no join); otherwise each
    /// attempt is checked against its job's run. Two ranges of `attempts_by_time`, which
    /// covers both: a bare count of every attempt, and the other classes grouped. Successes
    /// are the difference, since they are nearly every attempt: comparing each attempt with
    /// every class, or a GROUP BY that sorts them all, made a month of attempts (10M) take
    /// 3 s instead of under one.
    pub async fn attempt_classes(
        &self,
        runs: Option<&RunSet>,
        from: i64,
        to: i64,
    ) -> Result<[i64; CLASSES.len() + 1], StoreError> {
        let range = format!(
            "FROM attempts a INDEXED BY attempts_by_time {}
             WHERE a.started_at >= ?1 AND a.started_at < ?2 {}",
            join_for(runs),
            filter_for(runs)
        );
        let (total,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) {range}")))
                .bind(from)
                .bind(to)
                .bind(runs.map(RunSet::as_json))
                .fetch_one(&self.pool)
                .await?;
        let others: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT a.class, count(*) {range} AND a.class <> 'success' GROUP BY a.class"
        )))
        .bind(from)
        .bind(to)
        .bind(runs.map(RunSet::as_json))
        .fetch_all(&self.pool)
        .await?;
        let mut out = [0; CLASSES.len() + 1];
        out[0] = total;
        for (class, n) in others {
            let slot = CLASSES
                .iter()
                .position(|c| *c == class)
                .unwrap_or(CLASSES.len());
            out[slot] += n;
            out[0] -= n;
        }
        Ok(out)
    }

    /// Request durations started in `[from, to)` as (bin, count), every `sample_every`-th
    /// attempt by id (1: all of them), so a month of attempts sorts only a sample.
    pub async fn latency_bins(
        &self,
        runs: Option<&RunSet>,
        from: i64,
        to: i64,
        sample_every: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let sql = format!(
            "SELECT {BIN_SQL} AS bin_ms, count(*) FROM attempts a INDEXED BY attempts_by_time {}
             WHERE a.started_at >= ?1 AND a.started_at < ?2 AND a.id % ?4 = 0 {}
             GROUP BY bin_ms",
            join_for(runs),
            filter_for(runs)
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(from)
            .bind(to)
            .bind(runs.map(RunSet::as_json))
            .bind(sample_every.max(1))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Rows now in `state` (failed, say) per bucket of the time they got there. Rows whose
    /// time is unknown are left out; the caller clamps buckets outside its range.
    pub async fn settled_by_time(
        &self,
        runs: &RunSet,
        state: JobState,
        origin: i64,
        width: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT (updated_at - ?3) / ?4 AS bucket, count(*) FROM jobs
             WHERE run_id IN (SELECT value FROM json_each(?1)) AND state = ?2
               AND state <> 'pending' AND state <> 'in_flight' AND state <> 'succeeded'
               AND updated_at IS NOT NULL
             GROUP BY bucket ORDER BY bucket",
        )
        .bind(runs.as_json())
        .bind(state.as_str())
        .bind(origin)
        .bind(width)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_stay_within_ten_percent() {
        for ms in [0, 7, 99, 100, 105, 999, 1000, 1099, 9999, 10_000, 123_456] {
            let bin = latency_bin(ms);
            assert!(bin <= ms && (ms - bin) * 10 <= ms.max(1), "{ms} -> {bin}");
        }
    }
}

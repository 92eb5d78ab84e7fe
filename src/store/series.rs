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

/// Attempts of one bucket, class and latency bin.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AttemptCell {
    pub bucket: i64,
    pub class: String,
    /// The duration rounded down to within 10% (1 ms steps below 100 ms, 10 ms below 1 s,
    /// 100 ms below 10 s, whole seconds above), so percentiles come from a small histogram.
    pub bin_ms: i64,
    pub count: i64,
}

/// The duration bin of an attempt, the SQL twin of [`latency_bin`].
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

    /// Attempts per bucket, class and latency bin. `runs: None` takes every run (no join);
    /// otherwise each attempt in the window is checked against its job's run.
    pub async fn attempt_cells(
        &self,
        runs: Option<&RunSet>,
        buckets: Buckets,
    ) -> Result<Vec<AttemptCell>, StoreError> {
        let (join, filter) = match runs {
            Some(_) => (
                "JOIN jobs j ON j.id = a.job_id",
                "AND j.run_id IN (SELECT value FROM json_each(?5))",
            ),
            None => ("", "AND ?5 IS NULL"),
        };
        let sql = format!(
            "SELECT (a.started_at - ?3) / ?4 AS bucket, a.class, {BIN_SQL} AS bin_ms,
                    count(*) AS count
             FROM attempts a {join}
             WHERE a.started_at >= ?1 AND a.started_at <= ?2 {filter}
             GROUP BY bucket, a.class, bin_ms"
        );
        Ok(sqlx::query_as::<_, AttemptCell>(sqlx::AssertSqlSafe(sql))
            .bind(buckets.from)
            .bind(buckets.to)
            .bind(buckets.origin)
            .bind(buckets.width)
            .bind(runs.map(RunSet::as_json))
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
               AND state <> 'pending' AND updated_at IS NOT NULL
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

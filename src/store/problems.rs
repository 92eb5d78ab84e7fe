//! Report queries over a run's rows: counts per state and what went wrong, with examples.

use serde::Serialize;

use super::settings::RunSet;
use super::{Counts, JobState, Store, StoreError};

/// Rows with one error class and message, with the first few as examples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageGroup {
    /// The error class ('' for invalid rows, whose reason is the message).
    pub class: String,
    pub message: String,
    pub count: i64,
    pub examples: Vec<Example>,
}

/// One example row: where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Example {
    pub run: String,
    pub ticket_id: Option<String>,
    pub file: String,
    pub line: i64,
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    class: String,
    message: String,
    count: i64,
    #[sqlx(flatten)]
    example: Example,
}

/// Example rows kept per message group.
pub const EXAMPLES_PER_GROUP: i64 = 3;

/// What `export --state STATE --grep MESSAGE` takes from one run, for a message group: the
/// rows that `--grep` (a substring) matches, of which those of the group itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct GrepMatch {
    /// The group's place in the list passed in.
    pub group: i64,
    pub run_id: i64,
    /// Rows of the group (its class and exactly its message) in the run.
    pub in_group: i64,
    /// Rows in the state whose message contains the group's: `in_group` plus rows of other
    /// groups whose message holds this one.
    pub matched: i64,
}

/// The query behind [`Store::grep_matches`]: one walk of the state's rows (`jobs_settled`),
/// each compared with every group's message.
const GREP_MATCHES_SQL: &str = "WITH g AS (SELECT key AS k, json_extract(value, '$[0]') AS class,
                   json_extract(value, '$[1]') AS message FROM json_each(?3))
     SELECT g.k AS \"group\", j.run_id,
            sum(coalesce(j.error_class, '') = g.class AND j.error_message = g.message) AS in_group,
            count(*) AS matched
     FROM jobs j JOIN g ON instr(j.error_message, g.message) > 0
     WHERE j.run_id IN (SELECT value FROM json_each(?1)) AND j.state = ?2
       AND j.state <> 'pending' AND j.state <> 'in_flight' AND j.state <> 'succeeded'
       AND g.message <> ''
     GROUP BY g.k, j.run_id ORDER BY g.k, j.run_id";

impl Store {
    /// Rows per state for each run of `runs`, from one covering index scan and two sets of
    /// probes: all rows per run (`jobs_by_run`), the pending and in-flight ones
    /// (`jobs_open_by_run`) and the failed, invalid and skipped ones (`jobs_settled`, one
    /// range per run and state).
    /// Succeeded rows, nearly all of them, are the difference: counting them through
    /// `jobs_settled` read 10M entries a second time (0.7 s).
    pub async fn counts_by_run(&self, runs: &RunSet) -> Result<Vec<(i64, Counts)>, StoreError> {
        let totals: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT run_id, count(*) FROM jobs
             WHERE run_id IN (SELECT value FROM json_each(?1)) GROUP BY run_id",
        )
        .bind(runs.as_json())
        .fetch_all(&self.pool)
        .await?;
        let pending: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT run_id, state, count(*) FROM jobs INDEXED BY jobs_open_by_run
             WHERE run_id IN (SELECT value FROM json_each(?1))
               AND state IN ('pending', 'in_flight')
             GROUP BY run_id, state",
        )
        .bind(runs.as_json())
        .fetch_all(&self.pool)
        .await?;
        let rest: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT run_id, state, count(*) FROM jobs
             WHERE run_id IN (SELECT value FROM json_each(?1))
               AND state IN ('failed', 'invalid', 'skipped')
               AND state <> 'pending' AND state <> 'in_flight' AND state <> 'succeeded'
             GROUP BY run_id, state",
        )
        .bind(runs.as_json())
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(i64, Counts)> = runs
            .ids()
            .iter()
            .map(|&id| (id, Counts::default()))
            .collect();
        for (run_id, state, n) in pending.into_iter().chain(rest) {
            if let (Some(slot), Some(state)) = (
                out.iter_mut().find(|(id, _)| *id == run_id),
                JobState::parse(&state),
            ) {
                slot.1.add(state, n);
            }
        }
        for (run_id, total) in totals {
            if let Some(slot) = out.iter_mut().find(|(id, _)| *id == run_id) {
                let counted = slot.1.total();
                slot.1.add(JobState::Succeeded, total - counted);
            }
        }
        Ok(out)
    }

    /// Rows in `state` (failed or invalid) per error class.
    pub async fn classes(
        &self,
        runs: &RunSet,
        state: JobState,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT coalesce(error_class, ''), count(*) AS n FROM jobs
             WHERE run_id IN (SELECT value FROM json_each(?1)) AND state = ?2
               AND state <> 'pending' AND state <> 'in_flight' AND state <> 'succeeded'
             GROUP BY 1 ORDER BY n DESC, 1",
        )
        .bind(runs.as_json())
        .bind(state.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// For each group of `groups` (rows in `state`), per run holding some of its rows: how many
    /// rows `export --state STATE --grep MESSAGE` takes, and how many of them are the group's.
    /// Reads only the rows in that state, once. Groups with an empty message are left out
    /// (`--grep` needs some text).
    pub async fn grep_matches(
        &self,
        runs: &RunSet,
        state: JobState,
        groups: &[MessageGroup],
    ) -> Result<Vec<GrepMatch>, StoreError> {
        let pairs: Vec<(&str, &str)> = groups
            .iter()
            .map(|g| (g.class.as_str(), g.message.as_str()))
            .collect();
        let pairs = serde_json::to_string(&pairs).map_err(|e| {
            StoreError::Query(sqlx::Error::Protocol(format!("failed to list groups: {e}")))
        })?;
        let found: Vec<GrepMatch> = sqlx::query_as(GREP_MATCHES_SQL)
            .bind(runs.as_json())
            .bind(state.as_str())
            .bind(pairs)
            .fetch_all(&self.pool)
            .await?;
        Ok(found.into_iter().filter(|m| m.in_group > 0).collect())
    }

    /// The `limit` most frequent (class, message) pairs among rows in `state`, each with its
    /// first [`EXAMPLES_PER_GROUP`] rows. Reads only the rows in that state.
    pub async fn top_messages(
        &self,
        runs: &RunSet,
        state: JobState,
        limit: i64,
    ) -> Result<Vec<MessageGroup>, StoreError> {
        let rows: Vec<GroupRow> = sqlx::query_as(
            "WITH f AS MATERIALIZED (
                 SELECT id, run_id, source_id, line, ticket_id,
                        coalesce(error_class, '') AS class, coalesce(error_message, '') AS message
                 FROM jobs
                 WHERE run_id IN (SELECT value FROM json_each(?1)) AND state = ?2
                   AND state <> 'pending' AND state <> 'in_flight' AND state <> 'succeeded'),
             g AS (SELECT class, message, count(*) AS n FROM f GROUP BY class, message
                   ORDER BY n DESC, class, message LIMIT ?3),
             e AS (SELECT f.*, row_number() OVER (PARTITION BY f.class, f.message
                                                  ORDER BY f.id) AS k
                   FROM f JOIN g USING (class, message))
             SELECT g.class, g.message, g.n AS count, r.name AS run, e.ticket_id,
                    s.path AS file, e.line
             FROM g JOIN e USING (class, message)
                    JOIN source_files s ON s.id = e.source_id
                    JOIN runs r ON r.id = e.run_id
             WHERE e.k <= ?4
             ORDER BY g.n DESC, g.class, g.message, e.id",
        )
        .bind(runs.as_json())
        .bind(state.as_str())
        .bind(limit)
        .bind(EXAMPLES_PER_GROUP)
        .fetch_all(&self.pool)
        .await?;
        let mut groups: Vec<MessageGroup> = Vec::new();
        for row in rows {
            match groups.last_mut() {
                Some(g) if g.class == row.class && g.message == row.message => {
                    g.examples.push(row.example)
                }
                _ => groups.push(MessageGroup {
                    class: row.class,
                    message: row.message,
                    count: row.count,
                    examples: vec![row.example],
                }),
            }
        }
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::fixtures::store_with;
    use crate::store::{JobState, RunSet};

    #[tokio::test]
    async fn grep_matches_count_the_group_and_what_its_text_also_takes() {
        let (_dir, store, run) = store_with(&["1", "2", "3", "4"]).await;
        let ids: Vec<i64> = store
            .job_rows(run, None, 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        for (id, message) in ids.iter().zip(["bad", "bad", "bad status", "100%"]) {
            store
                .mark_failed_for_tests(*id, "rejected", message, Some(200))
                .await
                .unwrap();
        }
        let runs = RunSet::new([run]);
        let groups = store
            .top_messages(&runs, JobState::Failed, 10)
            .await
            .unwrap();
        let messages: Vec<&str> = groups.iter().map(|g| g.message.as_str()).collect();
        assert_eq!(messages, ["bad", "100%", "bad status"]);
        let found = store
            .grep_matches(&runs, JobState::Failed, &groups)
            .await
            .unwrap();
        let seen: Vec<(i64, i64, i64)> = found
            .iter()
            .map(|m| (m.group, m.in_group, m.matched))
            .collect();
        // "bad" also takes "bad status"; `%` is no wildcard.
        assert_eq!(seen, [(0, 2, 3), (1, 1, 1), (2, 1, 1)]);
        assert!(found.iter().all(|m| m.run_id == run));
    }

    #[tokio::test]
    async fn grep_matches_walk_only_the_rows_in_the_state() {
        let (_dir, store, _) = store_with(&["1"]).await;
        let sql = format!("EXPLAIN QUERY PLAN {}", super::GREP_MATCHES_SQL);
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let plan = rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n");
        assert!(
            plan.contains("jobs_settled (run_id=? AND state=?)"),
            "{plan}"
        );
        let scans = plan
            .lines()
            .filter(|l| l.contains("SCAN") && !l.contains("SCAN json_each"));
        assert_eq!(scans.count(), 0, "{plan}");
    }
}

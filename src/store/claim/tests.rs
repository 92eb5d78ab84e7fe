//! The claim's order and cost: one ticket at a time across runs, release on finish.

use super::*;
use crate::store::fixtures::{add_run, store_with};
use crate::store::{Next, Outcome};

/// The ids one claim of up to `limit` rows returns.
async fn claim_ids(store: &Store, run: i64, cursor: &mut Cursor, limit: i64) -> Vec<i64> {
    store
        .claim(run, cursor, limit, 1, 1)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect()
}

fn done(id: i64) -> Outcome {
    Outcome {
        job_id: id,
        http_status: Some(200),
        next: Next::Succeeded { response: None },
        attempt: None,
    }
}

#[tokio::test]
async fn a_tickets_rows_are_claimed_one_at_a_time_in_order() {
    let (_dir, store, run) = store_with(&["a", "b", "a", "c", "a"]).await;
    let mut cursor = Cursor::default();
    let first = store.claim(run, &mut cursor, 10, 1, 1).await.unwrap();
    let ids: Vec<i64> = first.iter().map(|c| c.id).collect();
    assert_eq!(ids, [1, 2, 4], "later rows of ticket a wait");
    assert!(first.iter().all(|c| c.attempt == 1));
    assert!(cursor.exhausted);
    assert_eq!(
        store.waiting(run, 1).await.unwrap(),
        (false, None),
        "parked rows are not due: they wait for a release"
    );
    assert!(
        store
            .claim(run, &mut cursor, 10, 1, 1)
            .await
            .unwrap()
            .is_empty()
    );
    store.record_outcomes(&[done(1)]).await.unwrap();
    let next: Vec<i64> = store
        .claim(run, &mut cursor, 10, 1, 1)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(next, [3]);
    store.record_outcomes(&[done(3)]).await.unwrap();
    let next: Vec<i64> = store
        .claim(run, &mut cursor, 10, 1, 1)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(next, [5]);
    store
        .record_outcomes(&[done(2), done(4), done(5)])
        .await
        .unwrap();
    assert_eq!(store.waiting(run, 1).await.unwrap(), (false, None));
    assert_eq!(store.counts(run).await.unwrap().succeeded, 5);
}

#[tokio::test]
async fn a_retry_waits_for_its_time_and_holds_back_its_ticket() {
    let (_dir, store, run) = store_with(&["a", "a"]).await;
    let mut cursor = Cursor::default();
    let first = store.claim(run, &mut cursor, 10, 1, 1_000).await.unwrap();
    assert_eq!(first.len(), 1);
    let retry = Outcome {
        job_id: 1,
        http_status: Some(503),
        next: Next::Retry {
            at_ms: 5_000,
            class: "transient".into(),
            message: "HTTP 503".into(),
        },
        attempt: None,
    };
    store.record_outcomes(&[retry]).await.unwrap();
    assert_eq!(
        store.waiting(run, 1_000).await.unwrap(),
        (true, Some(5_000))
    );
    assert!(
        store
            .claim(run, &mut cursor, 10, 1, 4_999)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store.claim(run, &mut cursor, 10, 1, 5_000).await.unwrap();
    assert_eq!(
        (again[0].id, again[0].attempt),
        (1, 2),
        "the retry counts as attempt 2"
    );
}

#[tokio::test]
async fn orphans_go_back_replayed_and_completions_need_the_claim() {
    let (_dir, store, run) = store_with(&["a", "b"]).await;
    let mut cursor = Cursor::default();
    assert_eq!(
        store.claim(run, &mut cursor, 10, 1, 1).await.unwrap().len(),
        2
    );
    // A runner died here. The next one puts its rows back.
    assert_eq!(store.requeue_orphans(run, 2).await.unwrap(), 2);
    // A late result of the dead runner's claim changes nothing.
    assert_eq!(store.record_outcomes(&[done(1)]).await.unwrap(), 0);
    let mut cursor = Cursor::default();
    let again = store.claim(run, &mut cursor, 10, 1, 3).await.unwrap();
    assert!(again.iter().all(|c| c.attempt == 1), "{again:?}");
    let rows = store.job_rows(run, None, 0, 10).await.unwrap();
    assert!(rows.iter().all(|r| r.replayed), "{rows:?}");
}

#[tokio::test]
async fn batches_of_any_size_store_exactly_their_rows() {
    // Statements are padded to 1, 8, 64 or 512 rows: sizes on each side of those.
    let tickets: Vec<String> = (0..1200).map(|i| format!("t{i}")).collect();
    let names: Vec<&str> = tickets.iter().map(String::as_str).collect();
    let (_dir, store, run) = store_with(&names).await;
    let mut cursor = Cursor::default();
    let mut ids = Vec::new();
    while ids.len() < names.len() {
        let claimed = store.claim(run, &mut cursor, 500, 1, 1).await.unwrap();
        ids.extend(claimed.iter().map(|c| c.id));
    }
    let mut rest = &ids[..];
    for size in [1, 7, 9, 63, 65, 511, 513] {
        let (batch, tail) = rest.split_at(size);
        rest = tail;
        let outcomes: Vec<Outcome> = batch
            .iter()
            .map(|&id| Outcome {
                attempt: Some(crate::store::fixtures::success_attempt(1)),
                ..done(id)
            })
            .collect();
        let changed = store.record_outcomes(&outcomes).await.unwrap();
        assert_eq!(changed, size as u64, "batch of {size}");
    }
    assert!(rest.len() < 512 && !rest.is_empty());
    let counts = store.counts(run).await.unwrap();
    assert_eq!(
        (counts.succeeded, counts.in_flight),
        (1169, names.len() as i64 - 1169)
    );
    let (attempts,): (i64,) = sqlx::query_as("SELECT count(*) FROM attempts")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 1169, "no padding row is stored");
}

#[tokio::test]
async fn finishing_a_row_releases_the_next_row_of_its_ticket_only() {
    let (_dir, store, run) = store_with(&["a", "a", "a", "b", "b"]).await;
    let mut cursor = Cursor::default();
    assert_eq!(claim_ids(&store, run, &mut cursor, 10).await, [1, 4]);
    let due = || async {
        let rows: Vec<(i64, Option<i64>)> =
            sqlx::query_as("SELECT id, next_attempt_at FROM jobs WHERE state = 'pending'")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        rows
    };
    assert_eq!(due().await, [(2, None), (3, None), (5, None)], "parked");
    // A retry is not an end: nothing is released.
    let retry = Outcome {
        job_id: 1,
        http_status: Some(503),
        next: Next::Retry {
            at_ms: 50,
            class: "transient".into(),
            message: "HTTP 503".into(),
        },
        attempt: None,
    };
    store.record_outcomes(&[retry]).await.unwrap();
    assert_eq!(
        due().await,
        [(1, Some(50)), (2, None), (3, None), (5, None)]
    );
    // A failure is an end: the ticket's next row is released, and only that one.
    assert_eq!(
        claim_ids(&store, run, &mut cursor, 10).await,
        [] as [i64; 0]
    );
    assert_eq!(
        store.claim(run, &mut cursor, 10, 1, 50).await.unwrap()[0].id,
        1
    );
    let failed = Outcome {
        next: Next::Failed {
            class: "rejected".into(),
            message: "Invalid Format".into(),
        },
        ..done(1)
    };
    store.record_outcomes(&[failed, done(4)]).await.unwrap();
    assert_eq!(due().await, [(2, Some(0)), (3, None), (5, Some(0))]);
    assert_eq!(claim_ids(&store, run, &mut cursor, 10).await, [2, 5]);
    store.record_outcomes(&[done(2), done(5)]).await.unwrap();
    assert_eq!(claim_ids(&store, run, &mut cursor, 10).await, [3]);
    store.record_outcomes(&[done(3)]).await.unwrap();
    assert_eq!(store.waiting(run, 1).await.unwrap(), (false, None));
    let counts = store.counts(run).await.unwrap();
    assert_eq!((counts.succeeded, counts.failed, counts.pending), (4, 1, 0));
}

#[tokio::test]
async fn an_earlier_runs_open_row_blocks_its_ticket_in_later_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("k.db")).await.unwrap();
    let night1 = add_run(&store, "night-1", &["a", "b"]).await;
    let night2 = add_run(&store, "night-2", &["a", "c", "b"]).await;
    // Night 2 alone: ticket a and b wait on night 1's rows; c goes.
    let mut cursor = Cursor::default();
    assert_eq!(claim_ids(&store, night2, &mut cursor, 10).await, [4]);
    assert!(cursor.exhausted);
    assert_eq!(store.waiting(night2, 1).await.unwrap(), (false, None));
    let holders = store.runs_holding_earlier_rows(night2).await.unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!((holders[0].0.id, holders[0].1), (night1, 2));
    assert_eq!(
        store
            .open_runs()
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [night1, night2],
        "oldest open row first"
    );
    // Night 1's rows go; each one finished releases night 2's row of its ticket.
    let mut first = Cursor::default();
    assert_eq!(claim_ids(&store, night1, &mut first, 10).await, [1, 2]);
    store.record_outcomes(&[done(1)]).await.unwrap();
    assert_eq!(claim_ids(&store, night2, &mut cursor, 10).await, [3]);
    store.record_outcomes(&[done(2)]).await.unwrap();
    assert_eq!(claim_ids(&store, night2, &mut cursor, 10).await, [5]);
    assert!(
        store
            .runs_holding_earlier_rows(night2)
            .await
            .unwrap()
            .is_empty()
    );
    // An orphan of a dead runner is open too: it blocks until it is sent again.
    let night3 = add_run(&store, "night-3", &["c"]).await;
    assert_eq!(store.requeue_orphans(night2, 2).await.unwrap(), 3);
    let mut third = Cursor::default();
    assert_eq!(
        claim_ids(&store, night3, &mut third, 10).await,
        [] as [i64; 0]
    );
}

#[tokio::test]
async fn a_long_run_of_one_ticket_is_walked_in_bounded_steps() {
    // 3 tickets x 40 consecutive rows: a claim of 2 looks at 8 rows at most.
    let tickets: Vec<&str> = ["x", "y", "z"]
        .iter()
        .flat_map(|t| std::iter::repeat_n(*t, 40))
        .collect();
    let (_dir, store, run) = store_with(&tickets).await;
    let mut cursor = Cursor::default();
    let mut first = Vec::new();
    let mut claims = 0;
    while !cursor.exhausted {
        first.extend(claim_ids(&store, run, &mut cursor, 2).await);
        claims += 1;
        assert!(claims < 100);
    }
    assert_eq!(first, [1, 41, 81]);
    assert!(claims > 3, "the walk stopped after each bounded step");
    // Finishing the first rows makes exactly the second rows due, found without a walk.
    store
        .record_outcomes(&[done(1), done(41), done(81)])
        .await
        .unwrap();
    assert_eq!(claim_ids(&store, run, &mut cursor, 10).await, [2, 42, 82]);
}

#[tokio::test]
async fn run_counts_follow_every_change() {
    let (_dir, store, run) = store_with(&["a", "b", "a", "c"]).await;
    let check = || async {
        assert_eq!(
            store.counts(run).await.unwrap(),
            store.recount_for_tests(run).await.unwrap()
        );
    };
    check().await;
    let mut cursor = Cursor::default();
    claim_ids(&store, run, &mut cursor, 10).await;
    check().await;
    store.requeue_orphans(run, 5).await.unwrap();
    check().await;
    let mut cursor = Cursor::default();
    claim_ids(&store, run, &mut cursor, 10).await;
    store.record_outcomes(&[done(1), done(2)]).await.unwrap();
    store
        .mark_failed_for_tests(4, "rejected", "no", Some(400))
        .await
        .unwrap();
    check().await;
    store
        .requeue_failed(run, crate::store::RowFilter::default(), false)
        .await
        .unwrap();
    check().await;
    assert_eq!(store.counts(run).await.unwrap().total(), 4);
    let summaries = store.run_summaries().await.unwrap();
    assert_eq!(summaries[0].counts, store.counts(run).await.unwrap());
}

/// The plan of every hot statement, on a database whose history would make a scan visible.
#[tokio::test]
async fn hot_queries_use_their_indexes() {
    // History: a finished night of 600 rows over 200 tickets, then the run the plans are for.
    let history: Vec<String> = (0..600).map(|i| format!("t{}", i % 200)).collect();
    let history: Vec<&str> = history.iter().map(String::as_str).collect();
    let (_dir, store, old) = store_with(&history).await;
    let mut cursor = Cursor::default();
    loop {
        let claimed = store.claim(old, &mut cursor, 512, 1, 1).await.unwrap();
        if claimed.is_empty() && cursor.exhausted {
            break;
        }
        let outcomes: Vec<Outcome> = claimed.iter().map(|c| done(c.id)).collect();
        store.record_outcomes(&outcomes).await.unwrap();
        cursor = Cursor::default();
    }
    assert_eq!(store.counts(old).await.unwrap().succeeded, 600);
    let run = add_run(&store, "new", &["t1", "b", "t1"]).await;
    sqlx::query("ANALYZE").execute(&store.pool).await.unwrap();
    let plan = |sql: String| {
        let store = store.clone();
        async move {
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .bind(run)
                    .bind(0_i64)
                    .bind(10_i64)
                    .fetch_all(&store.pool)
                    .await
                    .unwrap();
            rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
        }
    };
    let walk = plan(WALK_SQL.to_owned()).await;
    assert!(
        walk.contains("USING INDEX jobs_open_by_run (run_id=? AND state=? AND rowid>?)"),
        "{walk}"
    );
    assert!(
        walk.contains("USING INDEX jobs_by_ticket_sent (ticket_id=? AND id<?)"),
        "{walk}"
    );
    assert!(
        walk.contains("SEARCH b USING INTEGER PRIMARY KEY (rowid=?)"),
        "the row before by id first: {walk}"
    );
    let chain = plan(CHAIN_SQL.to_owned()).await;
    assert!(
        chain.contains("SEARCH x USING INTEGER PRIMARY KEY (rowid=?)"),
        "the next id first: {chain}"
    );
    assert!(
        chain.contains("USING INDEX jobs_by_ticket_sent (ticket_id=? AND id>?)"),
        "{chain}"
    );
    assert!(!chain.contains("SCAN jobs"), "{chain}");
    let due = plan(DUE_SQL.to_owned()).await;
    assert!(
        due.contains("USING INDEX jobs_waiting (run_id=? AND next_attempt_at"),
        "{due}"
    );
    assert!(!due.contains("TEMP B-TREE"), "no sort: {due}");
    for (sql, index) in [
        (
            "SELECT state, n FROM run_counts WHERE run_id = ?1 AND ?2 < ?3",
            "PRIMARY KEY",
        ),
        (
            "SELECT id FROM jobs INDEXED BY jobs_open_by_run WHERE run_id = ?1 AND ?2 < ?3
               AND state IN ('pending', 'in_flight') AND state = 'in_flight'",
            "jobs_open_by_run",
        ),
        (
            "SELECT id FROM jobs INDEXED BY jobs_by_run WHERE run_id = ?1 AND id > ?2
             ORDER BY id LIMIT ?3",
            "jobs_by_run",
        ),
        (
            "SELECT n.id FROM jobs n INDEXED BY jobs_by_ticket_sent
             WHERE n.ticket_id = 'a' AND n.payload IS NOT NULL AND n.id > ?2
               AND n.state <> 'skipped' AND ?1 < ?3 ORDER BY n.id LIMIT 1",
            "jobs_by_ticket_sent",
        ),
    ] {
        let text = plan(sql.to_owned()).await;
        assert!(text.contains(index), "{sql}: {text}");
        assert!(!text.contains("SCAN jobs"), "{sql}: {text}");
    }
}

#[tokio::test]
async fn a_skipped_row_neither_holds_nor_frees_the_rows_after_it() {
    // a1 is sent; a2 waits on it. Skipping a2 lets a3 wait on a1 instead, and a1's end
    // releases a3, passing over the skipped row.
    let (_dir, store, run) = store_with(&["a", "a", "a", "b"]).await;
    let mut cursor = Cursor::default();
    assert_eq!(claim_ids(&store, run, &mut cursor, 10).await, [1, 4]);
    sqlx::query("UPDATE jobs SET state = 'skipped' WHERE id = 2")
        .execute(&store.pool)
        .await
        .unwrap();
    store.record_outcomes(&[done(4)]).await.unwrap();
    assert_eq!(
        claim_ids(&store, run, &mut cursor, 10).await,
        [] as [i64; 0],
        "a3 still waits on a1"
    );
    store.record_outcomes(&[done(1)]).await.unwrap();
    assert_eq!(claim_ids(&store, run, &mut cursor, 10).await, [3]);
}

#[tokio::test]
async fn a_retried_row_holds_back_the_later_rows_of_its_ticket_still_pending() {
    // a1 fails; a2, released, fails too (say the ticket was locked). Retrying both sends a1
    // first, then a2.
    let (_dir, store, run) = store_with(&["a", "a"]).await;
    let mut cursor = Cursor::default();
    let failed = |id| Outcome {
        next: Next::Failed {
            class: "rejected".into(),
            message: "locked".into(),
        },
        ..done(id)
    };
    assert_eq!(claim_ids(&store, run, &mut cursor, 10).await, [1]);
    store.record_outcomes(&[failed(1)]).await.unwrap();
    assert_eq!(claim_ids(&store, run, &mut cursor, 10).await, [2]);
    store.record_outcomes(&[failed(2)]).await.unwrap();
    let requeued = store
        .requeue_failed(run, crate::store::RowFilter::default(), false)
        .await
        .unwrap();
    assert_eq!(requeued.requeued, 2);
    let mut cursor = Cursor::default();
    assert_eq!(claim_ids(&store, run, &mut cursor, 10).await, [1]);
    store.record_outcomes(&[done(1)]).await.unwrap();
    assert_eq!(claim_ids(&store, run, &mut cursor, 10).await, [2]);
}

/// What one claim with chains of up to `chain` rows returns: ids, and whether each follows
/// the row before it.
async fn claim_chained(store: &Store, run: i64, chain: usize, now: i64) -> Vec<(i64, bool)> {
    let mut cursor = Cursor::default();
    let claimed = store.claim(run, &mut cursor, 10, chain, now).await.unwrap();
    claimed.iter().map(|c| (c.id, c.follows)).collect()
}

#[tokio::test]
async fn a_chain_of_a_tickets_next_rows_is_claimed_together_and_capped() {
    // a: 1 2 4 5 6 (3 is b). Skipped rows are passed over; a row of another run ends a chain.
    let (_dir, store, run) = store_with(&["a", "a", "b", "a", "a", "a", "c", "c"]).await;
    sqlx::query("UPDATE jobs SET state = 'skipped' WHERE id = 4")
        .execute(&store.pool)
        .await
        .unwrap();
    let other = add_run(&store, "later", &["c", "c"]).await;
    assert_eq!(
        claim_chained(&store, run, 3, 1).await,
        [
            (1, false),
            (2, true),
            (5, true),
            (3, false),
            (7, false),
            (8, true)
        ],
        "capped at 3 rows; c's chain stops at the other run"
    );
    let states: Vec<(i64, String, i64)> =
        sqlx::query_as("SELECT id, state, attempts FROM jobs WHERE id IN (1, 2, 5, 6) ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
    assert!(
        states[..3]
            .iter()
            .all(|s| (s.1.as_str(), s.2) == ("in_flight", 1))
    );
    assert_eq!(states[3].1, "pending", "past the cap");
    // A crash: the chain's rows are replayed one at a time, in id order.
    assert_eq!(store.requeue_orphans(run, 2).await.unwrap(), 6);
    let replayed: Vec<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE replayed ORDER BY id")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    assert_eq!(
        replayed,
        [1, 3, 7],
        "rows behind an open row were never sent"
    );
    assert_eq!(
        claim_chained(&store, run, 1, 3).await,
        [(1, false), (3, false), (7, false)]
    );
    store.record_outcomes(&[done(1), done(7)]).await.unwrap();
    assert_eq!(
        claim_chained(&store, run, 16, 4).await,
        [(2, false), (5, true), (6, true), (8, false)],
        "released and parked rows chain alike"
    );
    store.record_outcomes(&[done(8)]).await.unwrap();
    assert_eq!(
        claim_chained(&store, other, 16, 5).await,
        [(9, false), (10, true)]
    );
}

#[tokio::test]
async fn a_failure_in_a_chain_returns_the_rest_unsent_behind_it() {
    let (_dir, store, run) = store_with(&["a", "a", "a", "a", "b"]).await;
    assert_eq!(
        claim_chained(&store, run, 16, 1).await,
        [(1, false), (2, true), (3, true), (4, true), (5, false)]
    );
    // 1 succeeds, 2 is to be retried at 5000; the worker stops there and returns 3 and 4.
    let requeue = Next::Requeue {
        at_ms: 0,
        class: None,
        message: None,
    };
    let unsent = |id| Outcome {
        next: requeue.clone(),
        ..done(id)
    };
    let retry = Outcome {
        next: Next::Retry {
            at_ms: 5_000,
            class: "transient".into(),
            message: "HTTP 503".into(),
        },
        ..done(2)
    };
    store
        .record_outcomes(&[done(1), retry, unsent(3), unsent(4), done(5)])
        .await
        .unwrap();
    let attempts: Vec<i64> = sqlx::query_scalar("SELECT attempts FROM jobs WHERE id IN (3, 4)")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    assert_eq!(attempts, [0, 0], "no attempt charged to rows not sent");
    for now in [2, 4_999] {
        assert_eq!(claim_chained(&store, run, 16, now).await, [], "behind 2");
    }
    assert_eq!(
        claim_chained(&store, run, 16, 5_000).await,
        [(2, false), (3, true), (4, true)],
        "the retry goes first, the rest behind it"
    );
    // A permanent failure ends the chain the same way, and frees the rows behind it.
    let failed = Outcome {
        next: Next::Failed {
            class: "rejected".into(),
            message: "no".into(),
        },
        ..done(2)
    };
    store
        .record_outcomes(&[failed, unsent(3), unsent(4)])
        .await
        .unwrap();
    assert_eq!(
        claim_chained(&store, run, 16, 5_001).await,
        [(3, false), (4, true)]
    );
}

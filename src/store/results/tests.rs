//! The journal of chain steps as a drain's writer uses it: steps recorded, chains folded, and
//! what a runner that died left behind.

use super::*;
use crate::store::fixtures::{store_with, success_attempt};
use crate::store::{Claimed, Cursor};

fn success(row: &Claimed) -> Outcome {
    Outcome {
        job_id: row.id,
        http_status: Some(200),
        next: Next::Succeeded {
            response: Some(format!("{{\"row\":{}}}", row.id)),
        },
        attempt: Some(success_attempt(row.attempt)),
    }
}

/// (id, state, replayed, response) of every row.
async fn rows(store: &Store) -> Vec<(i64, String, bool, Option<String>)> {
    sqlx::query_as("SELECT id, state, replayed, response FROM jobs ORDER BY id")
        .fetch_all(&store.pool)
        .await
        .unwrap()
}

async fn claim_all(store: &Store, run: i64) -> Vec<Claimed> {
    store
        .claim(run, &mut Cursor::default(), 16, 32, 1)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_crash_between_journaled_steps_replays_from_the_first_unrecorded_row() {
    let (_dir, store, run) = store_with(&["a", "a", "a", "a", "a", "b"]).await;
    let claimed = claim_all(&store, run).await;
    let chain: Vec<(i64, bool)> = claimed.iter().map(|c| (c.id, c.follows)).collect();
    assert_eq!(
        chain,
        [
            (1, false),
            (2, true),
            (3, true),
            (4, true),
            (5, true),
            (6, false)
        ]
    );
    // Rows 1 and 2 succeeded, each in its own commit, while the chain went on; row 3 was
    // being sent when the runner died.
    for (seq, row) in [(1, &claimed[0]), (2, &claimed[1])] {
        let steps = [Step {
            seq,
            outcome: success(row),
        }];
        let batch = Batch {
            steps: &steps,
            ..Batch::default()
        };
        assert_eq!(store.record(batch).await.unwrap(), 0, "rows stay in flight");
    }
    assert_eq!(store.counts(run).await.unwrap().in_flight, 6);
    assert_eq!(store.chain_steps_left().await.unwrap(), 2);

    let replayed = store.requeue_orphans(run, 10).await.unwrap();
    assert_eq!(replayed, 4, "rows 3 to 6");
    let state = rows(&store).await;
    let response = |id: i64| Some(format!("{{\"row\":{id}}}"));
    assert_eq!(
        state,
        [
            (1, "succeeded".into(), false, response(1)),
            (2, "succeeded".into(), false, response(2)),
            (3, "pending".into(), true, None),
            (4, "pending".into(), false, None),
            (5, "pending".into(), false, None),
            (6, "pending".into(), true, None),
        ],
        "the recorded successes are stored; only the first row not recorded may have been \
         sent"
    );
    assert_eq!(store.chain_steps_left().await.unwrap(), 0);
    let again: Vec<(i64, i64)> = claim_all(&store, run)
        .await
        .iter()
        .map(|c| (c.id, c.attempt))
        .collect();
    assert_eq!(
        again,
        [(3, 1), (4, 1), (5, 1), (6, 1)],
        "the replay starts at row 3"
    );
}

#[tokio::test]
async fn a_chain_is_folded_when_it_ends_and_its_entries_dropped() {
    let (_dir, store, run) = store_with(&["a", "a", "a", "b"]).await;
    let claimed = claim_all(&store, run).await;
    let steps: Vec<Step> = claimed[..2]
        .iter()
        .zip(1..)
        .map(|(row, seq)| Step {
            seq,
            outcome: success(row),
        })
        .collect();
    let batch = Batch {
        steps: &steps,
        outcomes: &[success(&claimed[3])],
        ..Batch::default()
    };
    assert_eq!(store.record(batch).await.unwrap(), 1, "row 4 (ticket b)");
    // Row 3 ends the chain: the rows before it are stored with it, and the journal's
    // entries below 3 are dropped.
    let batch = Batch {
        outcomes: &[success(&claimed[2])],
        fold: &[(1, 1), (2, 2)],
        folded_below: 3,
        ..Batch::default()
    };
    assert_eq!(store.record(batch).await.unwrap(), 3);
    let states: Vec<String> = rows(&store).await.into_iter().map(|r| r.1).collect();
    assert_eq!(states, ["succeeded"; 4]);
    assert_eq!(store.chain_steps_left().await.unwrap(), 0);
    let counts = store.counts(run).await.unwrap();
    assert_eq!((counts.succeeded, counts.in_flight), (4, 0));
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(
        attempts, 4,
        "every step's attempt is recorded when it happens"
    );
}

#[tokio::test]
async fn an_entry_applies_only_to_the_claim_that_wrote_it() {
    let (_dir, store, run) = store_with(&["a", "a"]).await;
    let claimed = claim_all(&store, run).await;
    let mut stale = success(&claimed[0]);
    stale.attempt.as_mut().unwrap().attempt = 7;
    let steps = [Step {
        seq: 1,
        outcome: stale,
    }];
    let batch = Batch {
        steps: &steps,
        ..Batch::default()
    };
    store.record(batch).await.unwrap();
    assert_eq!(store.requeue_orphans(run, 10).await.unwrap(), 2);
    let states: Vec<String> = rows(&store).await.into_iter().map(|r| r.1).collect();
    assert_eq!(states, ["pending", "pending"], "not this claim's success");
    assert_eq!(store.chain_steps_left().await.unwrap(), 0);
}

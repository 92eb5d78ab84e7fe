//! The ingest writer: rows stored, resumed after an interruption, duplicates removed.

use super::*;
use crate::store::DeltaOptions;

fn job(line: i64, invalid: bool) -> NewJob {
    NewJob {
        line,
        ticket_id: Some(format!("{line:012}")),
        payload: (!invalid).then(|| format!("{{\"ticket_id\":\"{line:012}\"}}")),
        payload_hash: (!invalid).then_some([line as u8; 16]),
        invalid_reason: invalid.then(|| "sub_status is empty".to_owned()),
        sync_key: None,
        raw_record: None,
    }
}

#[tokio::test]
async fn rows_are_stored_and_an_interrupted_source_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("k.db")).await.unwrap();
    let (run, _) = store.get_or_create_run("r").await.unwrap();
    let SourceStart::New { source_id } = store
        .begin_source(run.id, "a.csv", "h1", "s", "csv")
        .await
        .unwrap()
    else {
        panic!("expected a new source")
    };
    let mut writer = store.ingest_writer(run.id, source_id).await.unwrap();
    let jobs: Vec<NewJob> = (2..2503).map(|l| job(l, l % 100 == 0)).collect();
    writer.write(&jobs).await.unwrap();
    let progress = SourceProgress {
        last_line: 2502,
        rows_read: 2501,
        rows_valid: 2476,
        rows_invalid: 25,
    };
    writer.commit(progress).await.unwrap();
    // Uncommitted rows vanish with the writer, as with a crash.
    writer.write(vec![job(2503, false)]).await.unwrap();
    drop(writer);

    let start = store
        .begin_source(run.id, "a.csv", "h1", "s", "csv")
        .await
        .unwrap();
    assert_eq!(
        start,
        SourceStart::Resume {
            source_id,
            progress: SourceProgress {
                last_line: 2502,
                rows_read: 2501,
                rows_valid: 2476,
                rows_invalid: 25
            }
        }
    );
    let counts = store.counts(run.id).await.unwrap();
    assert_eq!((counts.pending, counts.invalid), (2476, 25));

    let mut writer = store.ingest_writer(run.id, source_id).await.unwrap();
    writer.write(vec![job(2503, false)]).await.unwrap();
    let done = SourceProgress {
        last_line: 2503,
        rows_read: 2502,
        rows_valid: 2477,
        rows_invalid: 25,
    };
    assert!(writer.finish(done, "h1").await.unwrap());
    assert!(matches!(
        store
            .begin_source(run.id, "a.csv", "h1", "s", "csv")
            .await
            .unwrap(),
        SourceStart::Done {
            progress: SourceProgress {
                rows_read: 2502,
                ..
            },
            ..
        }
    ));
    type Stored = (i64, String, Option<String>, Option<String>, Option<Vec<u8>>);
    let rows: Vec<Stored> = sqlx::query_as(
        "SELECT line, state, error_class, error_message, payload_hash FROM jobs
             WHERE line IN (99, 100) ORDER BY line",
    )
    .fetch_all(&store.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (99, "pending".into(), None, None, Some(vec![99; 16])),
            (
                100,
                "invalid".into(),
                Some("invalid".into()),
                Some("sub_status is empty".into()),
                None
            ),
        ]
    );
    let (ids_in_line_order,): (bool,) = sqlx::query_as(
        "SELECT count(*) = 0 FROM jobs a JOIN jobs b ON a.id < b.id AND a.line > b.line",
    )
    .fetch_one(&store.pool)
    .await
    .unwrap();
    assert!(ids_in_line_order);
}

#[tokio::test]
async fn a_duplicate_found_at_the_end_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("k.db")).await.unwrap();
    let (run, _) = store.get_or_create_run("r").await.unwrap();
    for (name, expect_new) in [("stdin-1", true), ("stdin-2", false)] {
        let SourceStart::New { source_id } = store
            .begin_source(run.id, "-", name, "s", "csv")
            .await
            .unwrap()
        else {
            panic!()
        };
        let mut writer = store.ingest_writer(run.id, source_id).await.unwrap();
        writer.write(vec![job(2, false)]).await.unwrap();
        let progress = SourceProgress {
            last_line: 2,
            rows_read: 1,
            rows_valid: 1,
            rows_invalid: 0,
        };
        assert_eq!(writer.finish(progress, "same").await.unwrap(), expect_new);
    }
    assert_eq!(store.counts(run.id).await.unwrap().pending, 1);
}

/// Ingests one row per (ticket, payload) into a new run, comparing with earlier rows.
async fn night(store: &Store, name: &str, rows: &[(&str, &str)]) -> i64 {
    let jobs: Vec<NewJob> = rows
        .iter()
        .enumerate()
        .map(|(i, (ticket, payload))| NewJob {
            line: i as i64 + 2,
            ticket_id: Some((*ticket).to_owned()),
            payload: Some((*payload).to_owned()),
            payload_hash: Some([payload.len() as u8; 16]),
            invalid_reason: None,
            sync_key: Some([ticket.len() as u8 + ticket.as_bytes()[0]; 16]),
            raw_record: None,
        })
        .collect();
    let delta = Some(crate::store::DeltaOptions::default());
    crate::store::fixtures::add_jobs(store, name, jobs, delta).await
}

#[tokio::test]
async fn unchanged_rows_keep_their_sync_key_only_to_resolve_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("k.db")).await.unwrap();
    // Night 1: a and b are sent. Night 2: a changes and is rejected. Night 3: a is back to
    // night 1's payload, b never changed.
    night(&store, "n1", &[("a", "one"), ("b", "bee")]).await;
    sqlx::query("UPDATE jobs SET state = 'succeeded'")
        .execute(&store.pool)
        .await
        .unwrap();
    let n2 = night(&store, "n2", &[("a", "three"), ("b", "bee")]).await;
    let (failed,): (i64,) = sqlx::query_as("SELECT id FROM jobs WHERE state = 'pending'")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    store
        .mark_failed_for_tests(failed, "rejected", "locked", Some(200))
        .await
        .unwrap();
    assert_eq!(store.resolved_failures(n2).await.unwrap(), 0);
    let n3 = night(&store, "n3", &[("a", "one"), ("b", "bee")]).await;
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT ticket_id, state, sync_key IS NOT NULL FROM jobs WHERE run_id = ? ORDER BY id",
    )
    .bind(n3)
    .fetch_all(&store.pool)
    .await
    .unwrap();
    // a equals what night 1 sent, over night 2's failure: it keeps its key, which resolves
    // that failure. b's unchanged row is found by nothing, so it is stored keyless.
    assert_eq!(
        rows,
        [
            ("a".into(), "skipped".into(), true),
            ("b".into(), "skipped".into(), false)
        ]
    );
    assert_eq!(store.resolved_failures(n2).await.unwrap(), 1);
}

/// The probe packs a found row's line and run into one integer (`delta/probe.rs`); a line
/// past that form's range makes SQLite answer a real number, and the probe asks again for the
/// wide form instead of misreading it.
#[tokio::test]
async fn a_line_past_the_packed_probe_answer_is_read_wide() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("k.db")).await.unwrap();
    night(&store, "n1", &[("a", "one"), ("b", "bee")]).await;
    sqlx::query(
        "UPDATE jobs SET state = 'succeeded',
         line = CASE ticket_id WHEN 'a' THEN 1099511627776 ELSE 5 END",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    let n2 = night(&store, "n2", &[("a", "one"), ("b", "bee")]).await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT state, error_message FROM jobs WHERE run_id = ? ORDER BY id")
            .bind(n2)
            .fetch_all(&store.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            (
                "skipped".into(),
                "unchanged since run n1, line 1099511627776".into()
            ),
            ("skipped".into(), "unchanged since run n1, line 5".into())
        ]
    );
}

/// On a new database the probe is made only for keys the ingest may have stored already
/// (`delta/seen.rs`): a key stored two chunks earlier (only the table has it) is still found,
/// unchanged or superseded.
#[tokio::test]
async fn a_repeated_key_on_a_new_database_is_found_chunks_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("k.db")).await.unwrap();
    let row = |line: i64, ticket: String, payload: &str| NewJob {
        line,
        sync_key: Some(crate::store::fixtures::key_of(&ticket)),
        payload: Some(format!(
            "{{\"ticket_id\":\"{ticket}\",\"p\":\"{payload}\"}}"
        )),
        payload_hash: Some([payload.len() as u8; 16]),
        ticket_id: Some(ticket),
        invalid_reason: None,
        raw_record: None,
    };
    let mut jobs: Vec<NewJob> = (0..2500)
        .map(|i| row(i + 2, format!("t{i}"), "a"))
        .collect();
    jobs.push(row(2502, "t0".into(), "a"));
    jobs.push(row(2503, "t1".into(), "bb"));
    let options = DeltaOptions {
        skip_unchanged: true,
        supersede: true,
        event_keys: false,
    };
    let run = crate::store::fixtures::add_jobs(&store, "r", jobs, Some(options)).await;
    let rows: Vec<(String, i64, String, Option<String>)> = sqlx::query_as(
        "SELECT ticket_id, line, state, error_message FROM jobs
         WHERE run_id = ? AND ticket_id IN ('t0', 't1') ORDER BY id",
    )
    .bind(run)
    .fetch_all(&store.pool)
    .await
    .unwrap();
    let skipped = |t: &str, line, why: &str| (t.into(), line, "skipped".into(), Some(why.into()));
    assert_eq!(
        rows,
        [
            ("t0".into(), 2, "pending".into(), None),
            skipped("t1", 3, "superseded by run r, line 2503"),
            skipped("t0", 2502, "unchanged since run r, line 2"),
            ("t1".into(), 2503, "pending".into(), None),
        ]
    );
}

/// A row of `ticket` (its sync key) whose payload is version `version` of it.
fn versioned(line: i64, ticket: &str, version: u8) -> NewJob {
    NewJob {
        line,
        sync_key: Some(crate::store::fixtures::key_of(ticket)),
        payload: Some(format!("{{\"ticket_id\":\"{ticket}\",\"v\":{version}}}")),
        payload_hash: Some([version; 16]),
        ticket_id: Some(ticket.to_owned()),
        invalid_reason: None,
        raw_record: None,
    }
}

/// `rows` rows of tickets `f0`, `f1`, ... (line = index + 2), except at each index given,
/// where the row is `versioned(line, ticket, version)`.
fn placed(rows: i64, at: &[(usize, &str, u8)]) -> Vec<NewJob> {
    let mut jobs: Vec<NewJob> = (0..rows)
        .map(|i| versioned(i + 2, &format!("f{i}"), 1))
        .collect();
    for &(index, ticket, version) in at {
        jobs[index] = versioned(index as i64 + 2, ticket, version);
    }
    jobs
}

/// Unchanged rows skipped, snapshot keys, superseding or not.
fn snapshot_keys(supersede: bool) -> DeltaOptions {
    DeltaOptions {
        skip_unchanged: true,
        supersede,
        event_keys: false,
    }
}

/// A key of a chunk that the rows just before it (the previous chunk, not committed yet) also
/// hold is decided against those rows, not against the last commit: with a probe that ran on
/// a snapshot of the last commit, k1's second row would be taken for changed and k3 would keep
/// two pending rows.
#[tokio::test]
async fn a_key_in_consecutive_chunks_is_decided_against_the_rows_just_written() {
    for supersede in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("k.db")).await.unwrap();
        let options = snapshot_keys(supersede);
        let night1 = ["k1", "k2", "k3"].map(|t| versioned(2, t, 1)).to_vec();
        crate::store::fixtures::add_jobs(&store, "a", night1, Some(options)).await;
        // Rows 997-999 end the first chunk of 1000, rows 1000-1002 begin the second.
        let night2 = placed(
            2000,
            &[
                (997, "k1", 2),
                (998, "k2", 1),
                (999, "k3", 2),
                (1000, "k1", 2),
                (1001, "k2", 2),
                (1002, "k3", 3),
            ],
        );
        crate::store::fixtures::add_jobs(&store, "b", night2, Some(options)).await;
        let rows: Vec<(String, String, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT r.name, j.ticket_id, j.line, j.state, j.error_message
             FROM jobs j JOIN runs r ON r.id = j.run_id
             WHERE j.ticket_id IN ('k1', 'k2', 'k3') ORDER BY j.ticket_id, j.id",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        let row = |run: &str, t: &str, line, why: Option<&str>| {
            let state = if why.is_some() { "skipped" } else { "pending" };
            (
                run.into(),
                t.into(),
                line,
                state.into(),
                why.map(Into::into),
            )
        };
        let superseded = |line: i64| format!("superseded by run b, line {line}");
        let (k1, k2, k3, k3_b) = if supersede {
            (
                superseded(999),
                superseded(1003),
                superseded(1001),
                superseded(1004),
            )
        } else {
            Default::default()
        };
        fn when(why: &str) -> Option<&str> {
            (!why.is_empty()).then_some(why)
        }
        assert_eq!(
            rows,
            [
                row("a", "k1", 2, when(&k1)),
                row("b", "k1", 999, None),
                row("b", "k1", 1002, Some("unchanged since run b, line 999")),
                row("a", "k2", 2, when(&k2)),
                row("b", "k2", 1000, Some("unchanged since run a, line 2")),
                row("b", "k2", 1003, None),
                row("a", "k3", 2, when(&k3)),
                row("b", "k3", 1001, when(&k3_b)),
                row("b", "k3", 1004, None),
            ],
            "supersede: {supersede}"
        );
    }
}

/// An event export's rows (`[delta] key`: many keys per ticket) are stored `event_key = 1` and
/// found through `jobs_by_event_key`; a snapshot row of the same ticket is still found past
/// the ticket's newer event rows (migration 0012).
#[tokio::test]
async fn event_keys_are_found_by_their_index_and_a_snapshot_past_newer_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("k.db")).await.unwrap();
    let row = |line: i64, key: &str, payload: &str| NewJob {
        line,
        sync_key: Some(crate::store::fixtures::key_of(key)),
        payload: Some(format!("{{\"ticket_id\":\"T\",\"p\":\"{payload}\"}}")),
        payload_hash: Some(crate::store::fixtures::key_of(payload)),
        ticket_id: Some("T".into()),
        invalid_reason: None,
        raw_record: None,
    };
    let snapshot = DeltaOptions::default();
    let events = DeltaOptions {
        event_keys: true,
        ..snapshot
    };
    let events_of = |night: &str| -> Vec<NewJob> {
        (0..300)
            .map(|i| {
                let text = if night == "e2" && i == 7 {
                    "edited"
                } else {
                    "said"
                };
                row(i + 2, &format!("T#{i}"), &format!("event {i} {text}"))
            })
            .collect()
    };
    let add = |name: &'static str, jobs: Vec<NewJob>, options| {
        let store = store.clone();
        async move { crate::store::fixtures::add_jobs(&store, name, jobs, Some(options)).await }
    };
    add("s1", vec![row(2, "T", "open")], snapshot).await;
    add("e1", events_of("e1"), events).await;
    let e2 = add("e2", events_of("e2"), events).await;
    let s2 = add("s2", vec![row(2, "T", "open")], snapshot).await;

    let states = |run: i64| {
        let store = store.clone();
        async move {
            let rows: Vec<(i64, String, Option<String>, i64)> = sqlx::query_as(
                "SELECT line, state, error_message, event_key FROM jobs WHERE run_id = ?
                 ORDER BY id",
            )
            .bind(run)
            .fetch_all(&store.pool)
            .await
            .unwrap();
            rows
        }
    };
    let night2 = states(e2).await;
    let pending: Vec<i64> = night2
        .iter()
        .filter(|r| r.1 == "pending")
        .map(|r| r.0)
        .collect();
    assert_eq!(pending, [9], "only the edited event is new");
    assert_eq!(
        night2[0],
        (
            2,
            "skipped".into(),
            Some("unchanged since run e1, line 2".into()),
            1
        )
    );
    assert!(night2.iter().all(|r| r.3 == 1), "event rows: event_key = 1");
    assert_eq!(
        states(s2).await,
        [(
            2,
            "skipped".into(),
            Some("unchanged since run s1, line 2".into()),
            0
        )],
        "the snapshot row is found past the 300 newer event rows of its ticket"
    );
}

/// On a database that held rows, keys are probed on a reader's connection, which sees only
/// committed rows (`delta/probe.rs`). A key stored to send chunks earlier in the open
/// transaction is probed on the writer's instead, and found, unchanged or superseded; a key
/// of an earlier transaction is found by the reader; a key of an earlier run too.
#[tokio::test]
async fn keys_the_reader_cannot_see_yet_are_found_on_the_writer() {
    for supersede in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("k.db")).await.unwrap();
        let options = snapshot_keys(supersede);
        let night1 = vec![versioned(2, "k0", 1)];
        crate::store::fixtures::add_jobs(&store, "a", night1, Some(options)).await;
        let (run, _) = store.get_or_create_run("b").await.unwrap();
        let SourceStart::New { source_id } = store
            .begin_source(run.id, "b.csv", "hb", "s", "csv")
            .await
            .unwrap()
        else {
            panic!("expected a new source")
        };
        let mut writer = store.ingest_writer(run.id, source_id).await.unwrap();
        writer.compare_with_earlier(options).await.unwrap();
        // Line = index + 2. Two transactions of 3,500 rows, written 700 at a time (as the
        // ingest hands them over): t0 and t1 come back two chunks of 1,000 later in the same
        // one; t2 is written in the first and comes back in the second; k0 is run a's.
        let rows = placed(
            7000,
            &[
                (10, "t0", 1),
                (20, "t1", 1),
                (30, "t2", 1),
                (2600, "t0", 1),
                (2700, "t1", 2),
                (3000, "k0", 1),
                (3100, "k0", 1),
                (6000, "t2", 1),
            ],
        );
        let progress = |last: i64| SourceProgress {
            last_line: last + 1,
            rows_read: last,
            rows_valid: last,
            rows_invalid: 0,
        };
        let mut rows = rows.into_iter();
        for transaction in 1..=2 {
            for _ in 0..5 {
                let part: Vec<NewJob> = rows.by_ref().take(700).collect();
                writer.write(part).await.unwrap();
            }
            if transaction == 1 {
                writer.commit(progress(3500)).await.unwrap();
            }
        }
        writer.finish(progress(7000), "hb").await.unwrap();
        let rows: Vec<(String, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT ticket_id, line, state, error_message FROM jobs
             WHERE run_id = ? AND ticket_id NOT LIKE 'f%' ORDER BY id",
        )
        .bind(run.id)
        .fetch_all(&store.pool)
        .await
        .unwrap();
        let pending = |t: &str, line| (t.into(), line, "pending".into(), None);
        let skipped =
            |t: &str, line, why: &str| (t.into(), line, "skipped".into(), Some(why.into()));
        let t1 = if supersede {
            skipped("t1", 22, "superseded by run b, line 2702")
        } else {
            pending("t1", 22)
        };
        assert_eq!(
            rows,
            [
                pending("t0", 12),
                t1,
                pending("t2", 32),
                skipped("t0", 2602, "unchanged since run b, line 12"),
                pending("t1", 2702),
                skipped("k0", 3002, "unchanged since run a, line 2"),
                skipped("k0", 3102, "unchanged since run a, line 2"),
                skipped("t2", 6002, "unchanged since run b, line 32"),
            ],
            "supersede: {supersede}"
        );
    }
}

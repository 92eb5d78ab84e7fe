//! Test fixtures shared by the store's unit tests: a fresh database holding one ingested run.

use sha2::{Digest, Sha256};

use super::{AttemptRecord, DeltaOptions, NewJob, SourceProgress, SourceStart, Store};

/// A sync key for tests: a digest of the ticket id, as uniform as the ingest's.
pub(crate) fn key_of(ticket: &str) -> [u8; 16] {
    let digest = Sha256::digest(ticket.as_bytes());
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// The record of a successful attempt `attempt` (HTTP 200, nothing kept from the answer).
pub(crate) fn success_attempt(attempt: i64) -> AttemptRecord {
    AttemptRecord {
        attempt,
        started_ms: 1,
        duration_ms: 1,
        http_status: Some(200),
        class: "success",
        in_doubt: false,
        excerpt: String::new(),
    }
}

/// A store with one run named `r` whose rows have these ticket ids, in order.
pub(crate) async fn store_with(tickets: &[&str]) -> (tempfile::TempDir, Store, i64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("k.db")).await.unwrap();
    let run = add_run(&store, "r", tickets).await;
    (dir, store, run)
}

/// Adds a run named `name` whose rows have these ticket ids, in order; returns its id.
pub(crate) async fn add_run(store: &Store, name: &str, tickets: &[&str]) -> i64 {
    let jobs: Vec<NewJob> = tickets
        .iter()
        .enumerate()
        .map(|(i, t)| NewJob {
            line: i as i64 + 2,
            ticket_id: Some((*t).to_owned()),
            payload: Some(format!("{{\"ticket_id\":\"{t}\",\"n\":{i}}}")),
            payload_hash: None,
            invalid_reason: None,
            sync_key: None,
            raw_record: None,
        })
        .collect();
    add_jobs(store, name, jobs, None).await
}

/// Adds a run named `name` holding `jobs` (all valid), compared with earlier rows when `delta`
/// is given, as one complete source file; returns the run's id.
pub(crate) async fn add_jobs(
    store: &Store,
    name: &str,
    jobs: Vec<NewJob>,
    delta: Option<DeltaOptions>,
) -> i64 {
    let (run, _) = store.get_or_create_run(name).await.unwrap();
    let SourceStart::New { source_id } = store
        .begin_source(run.id, "a.csv", name, "s", "csv")
        .await
        .unwrap()
    else {
        panic!("expected a new source")
    };
    let mut writer = store.ingest_writer(run.id, source_id).await.unwrap();
    if let Some(options) = delta {
        writer.compare_with_earlier(options).await.unwrap();
    }
    let n = jobs.len() as i64;
    writer.write(jobs).await.unwrap();
    let progress = SourceProgress {
        last_line: n + 1,
        rows_read: n,
        rows_valid: n,
        rows_invalid: 0,
    };
    writer.finish(progress, name).await.unwrap();
    run.id
}

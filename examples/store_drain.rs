//! The drain's SQLite work alone, without HTTP: claims and result batches on a copy of an
//! ingested database, to measure what the schema costs per row.
//!
//! `cargo run --release --example store_drain -- DB RUN_ID [CLAIM] [WRITE] [CHAIN]`

use std::time::Instant;

use kapsync::store::{AttemptRecord, Cursor, Next, Outcome, Store, now_ms};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let db = std::path::PathBuf::from(&args[1]);
    let run_id: i64 = args[2].parse().unwrap();
    let claim: i64 = args.get(3).map_or(512, |a| a.parse().unwrap());
    let write: usize = args.get(4).map_or(256, |a| a.parse().unwrap());
    // Rows per chain: 32 is what a drain with no rate limit claims (the engine's CHAIN).
    let chain: usize = args.get(5).map_or(32, |a| a.parse().unwrap());
    let store = Store::open(&db).await.unwrap();
    let start = Instant::now();
    let mut cursor = Cursor::default();
    let mut pending: Vec<Outcome> = Vec::new();
    let mut rows = 0u64;
    loop {
        let claimed = store
            .claim(run_id, &mut cursor, claim, chain, now_ms())
            .await
            .unwrap();
        if claimed.is_empty() && cursor.exhausted && pending.is_empty() {
            break;
        }
        for c in claimed {
            pending.push(Outcome {
                job_id: c.id,
                http_status: Some(200),
                next: Next::Succeeded {
                    response: Some(format!(
                        r#"{{"ticket_id":"{}","status":"Complete","sub_status":"CL","queue":"L1","message":"Ticket updated successfully"}}"#,
                        c.id
                    )),
                },
                attempt: Some(AttemptRecord {
                    attempt: c.attempt,
                    started_ms: now_ms(),
                    duration_ms: 3,
                    http_status: Some(200),
                    class: "success",
                    in_doubt: false,
                    excerpt: String::new(),
                }),
            });
        }
        while pending.len() >= write || (!pending.is_empty() && cursor.exhausted) {
            let take = pending.len().min(write);
            let batch: Vec<Outcome> = pending.drain(..take).collect();
            store.record_outcomes(&batch).await.unwrap();
            rows += batch.len() as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let line = format!(
        "{rows} rows in {secs:.2} s = {:.0} rows/s\n",
        rows as f64 / secs
    );
    std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes()).unwrap();
    store.close().await;
}

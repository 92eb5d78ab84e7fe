//! The drain's SQLite work alone, without HTTP: claims and result batches on a copy of an
//! ingested database, to measure what the schema costs per row.
//!
//! `cargo run --release --example store_drain -- DB RUN_ID [CLAIM] [WRITE] [CHAIN] [MODE]`
//!
//! MODE says how a chain's rows are stored:
//! - `batch` (the default): a claim's rows, chains whole, are stored `WRITE` at a time (what
//!   distinct tickets cost: most chains are one row);
//! - `steps`: as the engine sends chains, one row of each chain per commit (each only after the
//!   one before it is stored), every success stored on its row;
//! - `journal`: the same commits, a success with more of its chain behind it appended to the
//!   journal of chain steps and the chain's rows folded when it ends (what the engine does).

use std::collections::VecDeque;
use std::time::Instant;

use kapsync::store::{AttemptRecord, Batch, Claimed, Cursor, Next, Outcome, Step, Store, now_ms};

fn success(c: &Claimed) -> Outcome {
    Outcome {
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
    }
}

/// A chain being sent: its rows not yet stored, and its journal entries (seq, job id).
struct Going {
    rows: VecDeque<Claimed>,
    held: Vec<(i64, i64)>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let db = std::path::PathBuf::from(&args[1]);
    let run_id: i64 = args[2].parse().unwrap();
    let claim: i64 = args.get(3).map_or(512, |a| a.parse().unwrap());
    let write: usize = args.get(4).map_or(256, |a| a.parse().unwrap());
    // Rows per chain: 32 is what a drain with no rate limit claims (the engine's CHAIN).
    let chain: usize = args.get(5).map_or(32, |a| a.parse().unwrap());
    let mode = args.get(6).map_or("batch", String::as_str);
    assert!(
        matches!(mode, "batch" | "steps" | "journal"),
        "MODE: batch, steps or journal"
    );
    let store = Store::open(&db).await.unwrap();
    // `STORE_DRAIN_TEMP=file`: SQLite's default page cache and statement journals spilled to
    // disk, as before the drain's own settings (`Store::tune_for_drain`).
    let temp_in_memory = std::env::var("STORE_DRAIN_TEMP").as_deref() != Ok("file");
    store.tune_for_drain(temp_in_memory).await.unwrap();
    let start = Instant::now();
    let mut cursor = Cursor::default();
    let rows = if mode == "batch" {
        batches(&store, run_id, &mut cursor, claim, write, chain).await
    } else {
        stepwise(
            &store,
            run_id,
            &mut cursor,
            claim,
            write,
            chain,
            mode == "journal",
        )
        .await
    };
    let secs = start.elapsed().as_secs_f64();
    // Bytes handed to write(2)/pwrite(2) by this process: the WAL and the checkpoints.
    let written = std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| {
                    l.strip_prefix("wchar: ")
                        .map(|n| n.trim().parse::<u64>().ok())
                })
                .flatten()
        })
        .unwrap_or(0);
    let line = format!(
        "{rows} rows in {secs:.2} s = {:.0} rows/s, {:.1} KB written per row\n",
        rows as f64 / secs,
        written as f64 / 1000.0 / rows.max(1) as f64
    );
    std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes()).unwrap();
    store.close().await;
}

async fn batches(
    store: &Store,
    run_id: i64,
    cursor: &mut Cursor,
    claim: i64,
    write: usize,
    chain: usize,
) -> u64 {
    let mut pending: Vec<Outcome> = Vec::new();
    let mut rows = 0u64;
    loop {
        let claimed = store
            .claim(run_id, cursor, claim, chain, now_ms())
            .await
            .unwrap();
        if claimed.is_empty() && cursor.exhausted && pending.is_empty() {
            return rows;
        }
        pending.extend(claimed.iter().map(success));
        while pending.len() >= write || (!pending.is_empty() && cursor.exhausted) {
            let take = pending.len().min(write);
            let batch: Vec<Outcome> = pending.drain(..take).collect();
            store.record_outcomes(&batch).await.unwrap();
            rows += batch.len() as u64;
        }
    }
}

/// Keeps `claim` chains going; each commit stores the next row of up to `write` of them.
async fn stepwise(
    store: &Store,
    run_id: i64,
    cursor: &mut Cursor,
    claim: i64,
    write: usize,
    chain: usize,
    journal: bool,
) -> u64 {
    let mut going: VecDeque<Going> = VecDeque::new();
    let mut seq = store.next_step_seq().await.unwrap();
    let mut rows = 0u64;
    loop {
        let room = claim - going.len() as i64;
        if room > 0 && !cursor.exhausted || going.is_empty() {
            let claimed = store
                .claim(run_id, cursor, room.max(1), chain, now_ms())
                .await
                .unwrap();
            for row in claimed {
                match going.back_mut() {
                    Some(last) if row.follows => last.rows.push_back(row),
                    _ => going.push_back(Going {
                        rows: VecDeque::from([row]),
                        held: Vec::new(),
                    }),
                }
            }
            if going.is_empty() {
                if cursor.exhausted {
                    return rows;
                }
                continue;
            }
        }
        let (mut outcomes, mut steps, mut fold) = (Vec::new(), Vec::new(), Vec::new());
        let mut next = VecDeque::with_capacity(going.len());
        for (i, mut g) in going.drain(..).enumerate() {
            if i >= write {
                next.push_back(g);
                continue;
            }
            let row = g.rows.pop_front().unwrap();
            rows += 1;
            if journal && !g.rows.is_empty() {
                g.held.push((seq, row.id));
                steps.push(Step {
                    seq,
                    outcome: success(&row),
                });
                seq += 1;
            } else {
                outcomes.push(success(&row));
                fold.append(&mut g.held);
            }
            if !g.rows.is_empty() {
                next.push_back(g);
            }
        }
        going = next;
        let folded_below = going
            .iter()
            .filter_map(|g| g.held.first().map(|&(s, _)| s))
            .min()
            .unwrap_or(seq);
        let batch = Batch {
            outcomes: &outcomes,
            steps: &steps,
            fold: &fold,
            folded_below: if journal { folded_below } else { 0 },
        };
        store.record(batch).await.unwrap();
    }
}

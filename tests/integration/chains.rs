//! A ticket's consecutive rows go out as a chain, through the binary against the simulator's
//! ledger: each ticket's requests arrive in id order, and nothing after a row that failed is
//! sent before that row's retry.

use std::collections::BTreeMap;

use kapsync::simulator::SimConfig;

use crate::support::{Workspace, start_sim, stderr};

/// Ticket A: 20 consecutive rows, 45 rows of 15 other tickets, 40 more rows of A (its 30th
/// row has a sub-status the simulator rejects), 45 more of the others. Comments are
/// `<ticket>-<seq>`, `seq` counting each ticket's rows from 1.
fn rows() -> String {
    let mut csv = String::from("ticket_id,sub_status,comment\n");
    let mut seq: BTreeMap<u64, u32> = BTreeMap::new();
    let mut row = |csv: &mut String, ticket: u64, sub_status: &str| {
        let n = seq.entry(ticket).or_default();
        *n += 1;
        csv.push_str(&format!("{ticket},{sub_status},{ticket}-{n}\n"));
    };
    let a = 900_000_000_001;
    let others = |i: u64| 100_000_000_000 + i % 15;
    for _ in 0..20 {
        row(&mut csv, a, "CL");
    }
    for i in 0..45 {
        row(&mut csv, others(i), "OP");
    }
    for i in 21..=60 {
        row(&mut csv, a, if i == 30 { "ZZ" } else { "CL" });
    }
    for i in 0..45 {
        row(&mut csv, others(i), "CL");
    }
    csv
}

// The binary is waited for while the in-process simulator serves it: it needs its own threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_keeps_ticket_order_and_waits_behind_a_failed_row_until_its_retry() {
    let sim = start_sim(SimConfig {
        fail_rate: 0.1,
        seed: 5,
        ..SimConfig::default()
    })
    .await;
    let ws = Workspace::new();
    let file = ws.file("rows.csv", rows());
    ws.kapsync()
        .args(["ingest", "--run", "r"])
        .arg(&file)
        .assert()
        .code(0);
    let run = ws
        .kapsync()
        .args(["run", "--run", "r", "--rate", "0", "--concurrency", "8"])
        .args(["--max-attempts", "30", "--base-url", &sim.base_url()])
        .env("KAPTURE_TOKEN", "t")
        .output()
        .unwrap();
    // The rejected row is resolved by the later rows of its ticket that succeeded.
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let ledger = sim.ledger();
    sim.shutdown().await;

    // Every request a ticket got, in arrival order: (seq, outcome).
    let mut per_ticket: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
    for entry in &ledger {
        let comment = entry.comment.as_deref().unwrap();
        let seq: u32 = comment.rsplit('-').next().unwrap().parse().unwrap();
        per_ticket
            .entry(entry.ticket_id.clone().unwrap())
            .or_default()
            .push((seq, entry.outcome.clone()));
    }
    let transient = ledger.iter().filter(|e| e.outcome == "fail_5xx").count();
    assert!(transient > 5, "the fail rate failed some requests");
    for (ticket, requests) in &per_ticket {
        assert_eq!(requests[0].0, 1, "ticket {ticket} starts at its first row");
        for pair in requests.windows(2) {
            let ((row, outcome), (next, _)) = (&pair[0], &pair[1]);
            // After a success or a rejection the next row goes; after a 5xx, the same row.
            let expected = if outcome == "fail_5xx" { *row } else { row + 1 };
            assert_eq!(
                *next, expected,
                "ticket {ticket}: after row {row} ({outcome}) came row {next}: {requests:?}"
            );
        }
    }
    let a = &per_ticket["900000000001"];
    assert_eq!(a.last().unwrap().0, 60);
    let rejected: Vec<u32> = a
        .iter()
        .filter(|(_, o)| o == "rejected")
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(rejected, [30]);

    // Every row ended as its last request said, and its attempts are its requests: rows
    // returned unsent from a chain were charged nothing.
    let jobs = ws.jobs(Some("r")).await;
    assert_eq!(jobs.len(), 150);
    for job in &jobs {
        let ticket = job.ticket_id.as_deref().unwrap();
        let seq = jobs
            .iter()
            .filter(|j| j.ticket_id.as_deref() == Some(ticket) && j.id <= job.id)
            .count() as u32;
        let sent = per_ticket[ticket].iter().filter(|(r, _)| *r == seq).count();
        assert_eq!(job.attempts, sent as i64, "{job:?}");
        let expected = if ticket == "900000000001" && seq == 30 {
            "failed"
        } else {
            "succeeded"
        };
        assert_eq!(job.state, expected, "{job:?}");
    }
}

//! Nights that follow each other: a ticket's rows are applied in ingest order across runs,
//! whatever stopped the night before (the time window, `kill -9`), and `run --run NAME` never
//! waits forever on another run's rows.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kapsync::simulator::{Latency, LedgerEntry, SimConfig};

use crate::support::{Workspace, eventually, start_sim, stderr};

/// One night's export: one row per ticket, the comment naming the night (`n1-7`).
fn night(night: u32, tickets: usize) -> String {
    let mut csv = String::from("ticket_id,sub_status,comment\n");
    for t in 0..tickets {
        let status = if night % 2 == 1 { "OP" } else { "CL" };
        csv.push_str(&format!(
            "{},{status},n{night}-{t}\n",
            300_000_000_000u64 + t as u64
        ));
    }
    csv
}

/// Night 1 synced at 5 requests/s for one second: stopped by the window with rows left.
fn stopped_night_1(ws: &Workspace, base_url: &str, tickets: usize) {
    let path = ws.file("night1.csv", night(1, tickets));
    let out = ws
        .kapsync()
        .args([
            "sync",
            "--run",
            "night-1",
            "--rate",
            "5",
            "--max-duration",
            "1s",
        ])
        .args(["--base-url", base_url])
        .arg(&path)
        .env("KAPTURE_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}

/// The comments each ticket received, in the order the simulator applied them.
fn applied(ledger: &[LedgerEntry]) -> BTreeMap<String, Vec<String>> {
    let mut per_ticket: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in ledger.iter().filter(|e| e.outcome == "success") {
        per_ticket
            .entry(entry.ticket_id.clone().unwrap())
            .or_default()
            .push(entry.comment.clone().unwrap());
    }
    per_ticket
}

/// Every ticket got night 1's row before night 2's (repeats of a replayed row allowed) and
/// ended on night 2's.
fn assert_nights_in_order(ledger: &[LedgerEntry], tickets: usize) {
    let per_ticket = applied(ledger);
    assert_eq!(per_ticket.len(), tickets);
    for (ticket, comments) in &per_ticket {
        let nights: Vec<u8> = comments.iter().map(|c| c.as_bytes()[1]).collect();
        assert!(
            nights.windows(2).all(|w| w[0] <= w[1]),
            "ticket {ticket}: an older night applied after a newer one: {comments:?}"
        );
        assert!(
            comments.first().unwrap().starts_with("n1-")
                && comments.last().unwrap().starts_with("n2-"),
            "ticket {ticket}: {comments:?}"
        );
    }
}

async fn states(ws: &Workspace, run: &str) -> BTreeMap<String, usize> {
    let mut states = BTreeMap::new();
    for job in ws.jobs(Some(run)).await {
        *states.entry(job.state).or_default() += 1;
    }
    states
}

fn all_succeeded(n: usize) -> BTreeMap<String, usize> {
    BTreeMap::from([("succeeded".to_owned(), n)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_night_is_sent_before_the_next_nights_sync_and_never_after_it() {
    let ws = Workspace::new();
    let sim = start_sim(SimConfig::default()).await;
    let tickets = 40;
    stopped_night_1(&ws, &sim.base_url(), tickets);
    let left = states(&ws, "night-1").await;
    assert!(left.get("pending").copied().unwrap_or(0) > 0, "{left:?}");

    let path = ws.file("night2.csv", night(2, tickets));
    let out = ws
        .kapsync()
        .args(["sync", "--run", "night-2", "--rate", "0"])
        .args(["--base-url", &sim.base_url()])
        .arg(&path)
        .env("KAPTURE_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(states(&ws, "night-1").await, all_succeeded(tickets));
    assert_eq!(states(&ws, "night-2").await, all_succeeded(tickets));
    let ledger = sim.ledger();
    sim.shutdown().await;
    assert_nights_in_order(&ledger, tickets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_of_one_night_sends_the_earlier_rows_it_waits_on_first() {
    let ws = Workspace::new();
    let sim = start_sim(SimConfig::default()).await;
    let tickets = 30;
    stopped_night_1(&ws, &sim.base_url(), tickets);
    let path = ws.file("night2.csv", night(2, tickets));
    ws.kapsync()
        .args(["ingest", "--run", "night-2"])
        .arg(&path)
        .assert()
        .code(0);
    // A third run with rows of other tickets only: nothing waits on it, so it is not sent.
    let other = ws.file(
        "other.csv",
        "ticket_id,sub_status,comment\n999999999999,CL,x\n",
    );
    ws.kapsync()
        .args(["ingest", "--run", "other"])
        .arg(&other)
        .assert()
        .code(0);

    let out = ws
        .kapsync()
        .args(["run", "--run", "night-2", "--rate", "0"])
        .args(["--base-url", &sim.base_url()])
        .env("KAPTURE_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("wait on earlier rows of their tickets in run night-1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(states(&ws, "night-1").await, all_succeeded(tickets));
    assert_eq!(states(&ws, "night-2").await, all_succeeded(tickets));
    assert_eq!(states(&ws, "other").await.get("pending"), Some(&1));
    let ledger = sim.ledger();
    sim.shutdown().await;
    assert_nights_in_order(&ledger, tickets);
}

/// `kapsync sync night2.csv` in the background, 8 requests at a time.
fn spawn_sync(ws: &Workspace, base_url: &str, path: &std::path::Path) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("kapsync"))
        .arg("--db")
        .arg(ws.db())
        .args([
            "--no-progress",
            "-q",
            "sync",
            "--run",
            "night-2",
            "--rate",
            "0",
        ])
        .args(["--concurrency", "8", "--base-url", base_url])
        .arg(path)
        .env("KAPTURE_TOKEN", "t")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_two_nights_drain_loses_no_row_and_keeps_their_order() {
    let ws = Workspace::new();
    let sim = start_sim(SimConfig {
        latency: Some(Latency::Range(
            Duration::from_millis(5),
            Duration::from_millis(20),
        )),
        ..SimConfig::default()
    })
    .await;
    let tickets = 300;
    stopped_night_1(&ws, &sim.base_url(), tickets);
    let path = ws.file("night2.csv", night(2, tickets));
    // Killed once among night 1's leftovers, once among night 2's rows.
    for applied_before_kill in [40, tickets as u64 + 80] {
        let mut child = spawn_sync(&ws, &sim.base_url(), &path);
        eventually(Duration::from_secs(60), || {
            sim.stats().succeeded >= applied_before_kill || child.try_wait().unwrap().is_some()
        })
        .await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sync finished before it could be killed"
        );
        Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
    }
    let out = ws
        .kapsync()
        .args(["run", "--rate", "0", "--base-url", &sim.base_url()])
        .env("KAPTURE_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(states(&ws, "night-1").await, all_succeeded(tickets));
    assert_eq!(states(&ws, "night-2").await, all_succeeded(tickets));
    let ledger = sim.ledger();
    sim.shutdown().await;
    assert_nights_in_order(&ledger, tickets);
}

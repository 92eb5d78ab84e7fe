//! The drain engine against the simulator (in-process and through the binary) and against
//! scripted servers: delivery, order, halts, throttling, crashes and stops.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kapsync::engine::Halt;
use kapsync::simulator::{LedgerEntry, SimConfig};
use kapsync::store::Store;

use crate::support::{
    Workspace, drain, eventually, fast_config, ingest_rows, start_sim, stderr, stdout,
};

/// Every ticket's applied comments arrive in input order, each exactly once.
fn assert_applied_once_in_order(ledger: &[LedgerEntry], rows: usize) {
    let mut per_ticket: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for entry in ledger.iter().filter(|e| e.outcome == "success") {
        let comment = entry.comment.as_deref().unwrap();
        let seq: u32 = comment.rsplit('-').next().unwrap().parse().unwrap();
        per_ticket
            .entry(entry.ticket_id.clone().unwrap())
            .or_default()
            .push(seq);
    }
    let applied: usize = per_ticket.values().map(Vec::len).sum();
    assert_eq!(applied, rows, "every row applied exactly once");
    for (ticket, seqs) in per_ticket {
        let expected: Vec<u32> = (1..=seqs.len() as u32).collect();
        assert_eq!(
            seqs, expected,
            "ticket {ticket} applied out of order or twice"
        );
    }
}

#[tokio::test]
async fn a_fault_storm_ends_with_every_row_applied_once_in_order() {
    let ws = Workspace::new();
    ingest_rows(&ws, 600, 90);
    let sim = start_sim(SimConfig {
        token: Some("secret-token".into()),
        seed: 11,
        fail_rate: 0.12,
        // Each 429 pauses and slows the whole run (RELIABILITY.md: a server that throttles a
        // share of requests whatever the rate drives the rate down), so they are rarer here.
        throttle_rate: 0.01,
        drop_rate: 0.05,
        hang_rate: 0.02,
        hang_for: Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await;
    let report = drain(
        &ws.db(),
        &sim.base_url(),
        &fast_config(16, 0),
        Duration::from_millis(400),
    )
    .await;
    let ledger = sim.ledger();
    let stats = sim.stats();
    sim.shutdown().await;
    assert_eq!(report.counts.succeeded, 600, "{report:?}");
    assert_eq!(
        report.counts.pending + report.counts.failed + report.counts.in_flight,
        0
    );
    assert!(
        stats.fail_5xx > 0 && stats.throttled > 0 && stats.dropped > 0 && stats.hung > 0,
        "{stats:?}"
    );
    assert_applied_once_in_order(&ledger, 600);
    // Throttled answers never use up attempts: only charged failures count.
    let jobs = ws.jobs(Some("r")).await;
    assert!(jobs.iter().all(|j| j.attempts >= 1));
}

#[tokio::test]
async fn an_auth_halt_puts_rows_back_and_a_rerun_resumes() {
    let ws = Workspace::new();
    ingest_rows(&ws, 60, 60);
    let bad = start_sim(SimConfig {
        auth_fail_after: Some(20),
        ..SimConfig::default()
    })
    .await;
    let report = drain(
        &ws.db(),
        &bad.base_url(),
        &fast_config(4, 0),
        Duration::from_secs(5),
    )
    .await;
    bad.shutdown().await;
    assert!(
        matches!(report.halt, Some(Halt::Auth { .. })),
        "{:?}",
        report.halt
    );
    assert!(
        report
            .halt
            .as_ref()
            .unwrap()
            .to_string()
            .contains("invalid or expired")
    );
    assert_eq!(report.counts.succeeded, 20);
    assert_eq!(report.counts.pending, 40, "{:?}", report.counts);
    assert_eq!(report.counts.failed + report.counts.in_flight, 0);
    let jobs = ws.jobs(Some("r")).await;
    assert!(
        jobs.iter()
            .filter(|j| j.state == "pending")
            .all(|j| j.attempts == 0),
        "an auth refusal never uses up an attempt"
    );

    let good = start_sim(SimConfig::default()).await;
    let report = drain(
        &ws.db(),
        &good.base_url(),
        &fast_config(4, 0),
        Duration::from_secs(5),
    )
    .await;
    let ledger = good.ledger();
    good.shutdown().await;
    assert_eq!(report.counts.succeeded, 60);
    assert_eq!(ledger.iter().filter(|e| e.outcome == "success").count(), 40);
}

// The binary is waited for with blocking calls: the simulator needs its own threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_3_on_an_auth_halt_with_advice() {
    let ws = Workspace::new();
    ingest_rows(&ws, 10, 10);
    let sim = start_sim(SimConfig {
        token: Some("right".into()),
        ..SimConfig::default()
    })
    .await;
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "wrong")
        .args(["run", "--rate", "0", "--base-url", &sim.base_url()])
        .output()
        .unwrap();
    sim.shutdown().await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("invalid or expired") && text.contains("resumes"),
        "{text}"
    );
    assert!(
        !text.contains("wrong") && !stderr(&out).contains("wrong"),
        "the token is never shown"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_429_uses_no_attempt() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let ws = Workspace::new();
    ingest_rows(&ws, 1, 1);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_string(r#"{"status":"failed","message":"slow down"}"#),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"{"status":"success","message":"ok","ticket":{"ticket_id":"100000000000"}}"#,
        ))
        .mount(&server)
        .await;
    let mut config = fast_config(1, 0);
    config.throttle_cap = Duration::from_secs(60);
    let report = drain(&ws.db(), &server.uri(), &config, Duration::from_secs(5)).await;
    assert_eq!(report.counts.succeeded, 1);
    assert_eq!(
        report.throttle_events, 0,
        "a lone 429 makes its row wait, it does not slow the run"
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let jobs = ws.jobs(Some("r")).await;
    assert_eq!(jobs[0].attempts, 1, "the 429 was not charged");
    assert!(
        report.duration_ms >= 1000,
        "the second request waited for Retry-After"
    );
}

#[tokio::test]
async fn rejected_rows_fail_with_the_message_and_transient_ones_give_up_after_max_attempts() {
    let ws = Workspace::new();
    let path = ws.file(
        "rows.csv",
        "ticket_id,sub_status,comment\n100000000001,ZZ,unknown key\n100000000002,CL,fine\n",
    );
    ws.kapsync()
        .args(["ingest", "--run", "r"])
        .arg(&path)
        .assert()
        .code(0);
    let sim = start_sim(SimConfig::default()).await;
    let report = drain(
        &ws.db(),
        &sim.base_url(),
        &fast_config(2, 0),
        Duration::from_secs(5),
    )
    .await;
    sim.shutdown().await;
    assert_eq!((report.counts.succeeded, report.counts.failed), (1, 1));
    let failed = ws
        .jobs(Some("r"))
        .await
        .into_iter()
        .find(|j| j.state == "failed")
        .unwrap();
    assert_eq!(failed.error_class.as_deref(), Some("rejected"));
    assert!(
        failed
            .error_message
            .unwrap()
            .to_lowercase()
            .contains("sub_status")
    );

    let ws = Workspace::new();
    ingest_rows(&ws, 3, 3);
    let down = start_sim(SimConfig {
        fail_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let mut config = fast_config(2, 0);
    config.max_attempts = 3;
    let report = drain(&ws.db(), &down.base_url(), &config, Duration::from_secs(5)).await;
    let stats = down.stats();
    down.shutdown().await;
    assert_eq!(report.counts.failed, 3);
    assert_eq!(stats.requests, 9, "three attempts per row");
    let job = &ws.jobs(Some("r")).await[0];
    assert_eq!(job.error_class.as_deref(), Some("transient"));
    assert!(
        job.error_message
            .as_deref()
            .unwrap()
            .contains("after 3 attempts")
    );
}

#[tokio::test]
async fn a_wrong_path_halts_as_a_configuration_error() {
    let ws = Workspace::new();
    ingest_rows(&ws, 20, 20);
    let sim = start_sim(SimConfig::default()).await;
    let wrong = format!("{}/not-kapture", sim.base_url());
    let report = drain(&ws.db(), &wrong, &fast_config(1, 0), Duration::from_secs(5)).await;
    sim.shutdown().await;
    assert!(
        matches!(
            report.halt,
            Some(Halt::Config {
                http_status: 404,
                ..
            })
        ),
        "{:?}",
        report.halt
    );
    assert_eq!(report.counts.pending, 20, "no row failed one by one");
}

#[tokio::test]
async fn rate_20_holds_within_5_percent_over_ten_seconds() {
    let ws = Workspace::new();
    ingest_rows(&ws, 400, 400);
    let sim = start_sim(SimConfig::default()).await;
    let base = sim.base_url();
    let db = ws.db();
    let config = fast_config(8, 20);
    let drained =
        tokio::spawn(async move { drain(&db, &base, &config, Duration::from_secs(5)).await });
    assert!(eventually(Duration::from_secs(30), || sim.stats().requests >= 215).await);
    let ledger = sim.ledger();
    drained.abort();
    sim.shutdown().await;
    // Requests answered in the ten seconds after the first second (past the initial burst).
    let start = ledger[0].at_ms + 1000;
    let in_window = ledger
        .iter()
        .filter(|e| e.at_ms >= start && e.at_ms < start + 10_000)
        .count();
    assert!(
        (190..=210).contains(&in_window),
        "{in_window} requests in 10 s at --rate 20"
    );
}

#[tokio::test]
async fn against_a_server_limited_to_50_per_second_rate_200_uses_it_without_hammering() {
    let ws = Workspace::new();
    ingest_rows(&ws, 3000, 3000);
    let sim = start_sim(SimConfig {
        rate_limit: 50,
        ..SimConfig::default()
    })
    .await;
    let base = sim.base_url();
    let db = ws.db();
    let mut config = fast_config(16, 200);
    config.throttle_cap = Duration::from_secs(60);
    let drained =
        tokio::spawn(async move { drain(&db, &base, &config, Duration::from_secs(5)).await });
    assert!(eventually(Duration::from_secs(60), || sim.stats().succeeded >= 600).await);
    let ledger = sim.ledger();
    drained.abort();
    sim.shutdown().await;
    let first = ledger[0].at_ms;
    let last = ledger.last().unwrap().at_ms;
    let seconds = (last - first) as f64 / 1000.0;
    let succeeded = ledger.iter().filter(|e| e.outcome == "success").count() as f64;
    let throttled = ledger.iter().filter(|e| e.outcome == "throttled").count() as f64;
    let usage = succeeded / seconds / 50.0;
    let mut per_second = std::collections::BTreeMap::new();
    for e in &ledger {
        let slot: &mut (u32, u32) = per_second.entry((e.at_ms - first) / 1000).or_default();
        if e.outcome == "success" {
            slot.0 += 1
        } else {
            slot.1 += 1
        }
    }
    let share = throttled / ledger.len() as f64;
    assert!(
        usage >= 0.8,
        "used {:.0}% of the server's limit: {per_second:?}",
        usage * 100.0
    );
    assert!(
        share <= 0.10,
        "{:.1}% of requests were answered 429",
        share * 100.0
    );
}

// The binary is waited for with blocking calls: the simulator needs its own threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_shows_the_body() {
    let ws = Workspace::new();
    ingest_rows(&ws, 5, 5);
    let sim = start_sim(SimConfig::default()).await;
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args([
            "run",
            "--dry-run",
            "--rate",
            "5",
            "--base-url",
            &sim.base_url(),
        ])
        .output()
        .unwrap();
    let stats = sim.stats();
    sim.shutdown().await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stats.requests, 0);
    let text = stdout(&out);
    assert!(
        text.contains("5 rows would be sent, about 1s at 5 requests/s"),
        "{text}"
    );
    assert!(
        text.contains(r#"[{"comment":"t0-1","sub_status":"CL","ticket_id":"100000000000"}]"#),
        "{text}"
    );
    assert_eq!(
        ws.jobs(Some("r"))
            .await
            .iter()
            .filter(|j| j.state == "pending")
            .count(),
        5
    );
}

#[cfg(unix)]
fn signal(child: &std::process::Child, sig: &str) {
    std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
}

#[cfg(unix)]
// The binary is waited for with blocking calls: the simulator needs its own threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_resume_loses_nothing() {
    let ws = Workspace::new();
    ingest_rows(&ws, 400, 50);
    let sim = start_sim(SimConfig {
        latency: Some(kapsync::simulator::Latency::Fixed(Duration::from_millis(5))),
        ..SimConfig::default()
    })
    .await;
    let bin = assert_cmd::cargo::cargo_bin("kapsync");
    let spawn = || {
        std::process::Command::new(&bin)
            .args(["--db"])
            .arg(ws.db())
            .args([
                "--no-progress",
                "-q",
                "run",
                "--rate",
                "100",
                "--concurrency",
                "8",
            ])
            .args(["--base-url", &sim.base_url()])
            .env("KAPTURE_TOKEN", "t")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    assert!(eventually(Duration::from_secs(30), || sim.stats().succeeded >= 100).await);
    signal(&child, "-9");
    child.wait().unwrap();
    let mut child = spawn();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let ledger = sim.ledger();
    sim.shutdown().await;
    let jobs = ws.jobs(Some("r")).await;
    assert!(jobs.iter().all(|j| j.state == "succeeded"));
    let replayed = jobs.iter().filter(|j| j.replayed).count();
    // In flight: 8 requests, plus at most one claimed batch (8 x concurrency) queued for them.
    assert!(
        replayed <= 8 + 64,
        "at most the claimed rows are replayed: {replayed}"
    );
    let mut applied: HashMap<String, usize> = HashMap::new();
    for e in ledger.iter().filter(|e| e.outcome == "success") {
        *applied.entry(e.comment.clone().unwrap()).or_default() += 1;
    }
    assert_eq!(applied.len(), 400, "every row applied");
    let twice = applied.values().filter(|n| **n > 1).count();
    assert!(twice <= replayed, "only replayed rows can be applied twice");
    let store = Store::open(&ws.db()).await.unwrap();
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}

#[cfg(unix)]
// The binary is waited for with blocking calls: the simulator needs its own threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_gracefully_with_exit_4_and_a_second_runner_is_refused() {
    let ws = Workspace::new();
    ingest_rows(&ws, 200, 200);
    let sim = start_sim(SimConfig::default()).await;
    let bin = assert_cmd::cargo::cargo_bin("kapsync");
    let child = std::process::Command::new(&bin)
        .arg("--db")
        .arg(ws.db())
        .args([
            "--no-progress",
            "run",
            "--rate",
            "10",
            "--base-url",
            &sim.base_url(),
        ])
        .env("KAPTURE_TOKEN", "t")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(30), || sim.stats().succeeded >= 5).await);
    let second = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args(["run", "--base-url", &sim.base_url()])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    assert!(
        stderr(&second).contains(&format!("pid {}", child.id())),
        "{}",
        stderr(&second)
    );
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    sim.shutdown().await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stdout(&out).contains("stopped early"), "{}", stdout(&out));
    let jobs = ws.jobs(Some("r")).await;
    assert_eq!(jobs.iter().filter(|j| j.state == "in_flight").count(), 0);
    assert!(jobs.iter().filter(|j| j.state == "pending").count() > 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_ends_a_run_gracefully_with_exit_4() {
    let ws = Workspace::new();
    ingest_rows(&ws, 100, 100);
    let sim = start_sim(SimConfig::default()).await;
    let base = sim.base_url();
    let mut cmd = ws.kapsync();
    cmd.env("KAPTURE_TOKEN", "t").args([
        "run",
        "--rate",
        "10",
        "--max-duration",
        "1s",
        "--json",
        "--base-url",
        &base,
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    sim.shutdown().await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &report["runs"][0];
    assert_eq!(run["stopped"], true);
    assert!(run["counts"]["succeeded"].as_i64().unwrap() > 0);
    assert!(run["counts"]["pending"].as_i64().unwrap() > 50);
    assert_eq!(run["counts"]["in_flight"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_ingests_and_drains_in_one_command() {
    let ws = Workspace::new();
    let path = ws.file(
        "rows.csv",
        "ticket_id,sub_status,comment\n100000000001,CL,a\n100000000002,,b\n100000000003,ZZ,c\n",
    );
    let sim = start_sim(SimConfig::default()).await;
    let base = sim.base_url();
    let mut cmd = ws.kapsync();
    cmd.env("KAPTURE_TOKEN", "t")
        .args([
            "sync",
            "--run",
            "cron",
            "--rate",
            "0",
            "--json",
            "--base-url",
            &base,
        ])
        .arg(&path);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stats = sim.stats();
    sim.shutdown().await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "one invalid and one rejected row: {}",
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ingest"]["invalid"], 1);
    assert_eq!(
        report["runs"][0]["counts"],
        serde_json::json!({"pending": 0, "in_flight": 0, "succeeded": 1, "failed": 1, "invalid": 1, "skipped": 0})
    );
    assert_eq!((stats.succeeded, stats.rejected), (1, 1));
    // Run again, to the target the database recorded: the content is already there and
    // nothing is left to send.
    let mut cmd = ws.kapsync();
    cmd.env("KAPTURE_TOKEN", "t")
        .args(["sync", "--run", "cron"])
        .arg(&path);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("already ingested") && text.contains("Nothing to send"),
        "{text}"
    );
}

#[test]
fn demo_runs_from_anywhere_and_leaves_no_files() {
    let ws = Workspace::new();
    // A temporary directory of the demo's own: other tests run demos at the same time, and
    // their folders in the shared one come and go while this one looks.
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = assert_cmd::Command::cargo_bin("kapsync").unwrap();
    let out = cmd
        .current_dir(ws.dir.path())
        .env_remove("KAPTURE_TOKEN")
        .env("TMPDIR", tmp.path())
        .args(["--no-progress", "demo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Run demo: 90 succeeded"), "{text}");
    assert!(text.contains("What to try next"), "{text}");
    assert_eq!(
        std::fs::read_dir(ws.dir.path()).unwrap().count(),
        0,
        "nothing written here"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}

//! The simulator: ledger and stats, Get Ticket, seeded faults, shutdown, and the binary.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use kapsync::kapture::Class;
use kapsync::simulator::{LedgerEntry, SimConfig, SimStats, digest};

use crate::support::{client, client_with, eventually, start_sim, update};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_records_every_update_in_order_and_matches_the_http_view() {
    let sim = start_sim(SimConfig::default()).await;
    let client = client(&sim.base_url());
    let payloads: Vec<String> = (0..5)
        .map(|i| update("555000000001", "P", &format!("step {i}")))
        .collect();
    for payload in &payloads {
        assert_eq!(client.update_ticket(payload).await.class, Class::Success);
    }
    assert_eq!(
        client
            .update_ticket(&update("555000000002", "NO", "bad"))
            .await
            .class,
        Class::Rejected
    );

    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 6);
    for (i, entry) in ledger.iter().take(5).enumerate() {
        assert_eq!(entry.seq, i as u64 + 1);
        assert_eq!(entry.outcome, "success");
        assert_eq!(entry.http_status, Some(200));
        assert_eq!(entry.ticket_id.as_deref(), Some("555000000001"));
        assert_eq!(entry.comment.as_deref(), Some(format!("step {i}").as_str()));
        let sent: serde_json::Value = serde_json::from_str(&payloads[i]).unwrap();
        assert_eq!(entry.digest, digest(&sent));
    }
    assert_eq!(ledger[5].outcome, "rejected");

    let http = reqwest::Client::new();
    let text = http
        .get(format!("{}/_sim/ledger", sim.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let served: Vec<LedgerEntry> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(served, ledger);
    let stats: SimStats = http
        .get(format!("{}/_sim/stats", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, sim.stats());
    assert_eq!(
        (
            stats.requests,
            stats.succeeded,
            stats.rejected,
            stats.tickets
        ),
        (6, 5, 1, 1)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn get_ticket_returns_what_was_written() {
    let sim = start_sim(SimConfig::default()).await;
    let client = client(&sim.base_url()).keep_responses(true);
    let first =
        r#"{"ticket_id":"700000000001","sub_status":"OP","queue":"L1","x_source":"zendesk"}"#;
    let second = r#"{"ticket_id":"700000000001","sub_status":"CL","comment":"resolved"}"#;
    assert_eq!(client.update_ticket(first).await.class, Class::Success);
    let reply = client.update_ticket(second).await;
    assert_eq!(reply.ticket.as_ref().unwrap()["update_count"], 2);
    let tickets = client.get_tickets(&["700000000001"]).await.unwrap();
    assert_eq!(tickets.len(), 1);
    let ticket = &tickets[0];
    assert_eq!(ticket["sub_status"], "CL");
    assert_eq!(ticket["queue"], "L1");
    assert_eq!(ticket["x_source"], "zendesk");
    assert_eq!(ticket["comment"], "resolved");
    assert_eq!(Some(ticket), reply.ticket.as_ref());
    sim.shutdown().await;
}

async fn outcomes(seed: u64) -> Vec<String> {
    let sim = start_sim(SimConfig {
        seed,
        fail_rate: 0.3,
        throttle_rate: 0.2,
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim.base_url());
    for i in 0..40 {
        client
            .update_ticket(&update(&i.to_string(), "P", "x"))
            .await;
    }
    let ledger = sim.ledger();
    sim.shutdown().await;
    ledger
        .into_iter()
        .map(|e| format!("{}:{:?}", e.outcome, e.http_status))
        .collect()
}

#[tokio::test]
async fn seeded_faults_repeat() {
    let first = outcomes(7).await;
    assert_eq!(first, outcomes(7).await);
    assert_ne!(first, outcomes(8).await);
    assert!(first.iter().any(|o| o.starts_with("fail_5xx")), "{first:?}");
    assert!(
        first.iter().any(|o| o.starts_with("throttled")),
        "{first:?}"
    );
    assert!(first.iter().any(|o| o.starts_with("success")), "{first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_are_all_recorded_once() {
    let sim = start_sim(SimConfig::default()).await;
    let client = client(&sim.base_url());
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let ticket = format!("{worker:06}{i:06}");
                let reply = client.update_ticket(&update(&ticket, "P", "x")).await;
                assert_eq!(reply.class, Class::Success, "{reply:?}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut seqs: Vec<u64> = sim.ledger().iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    assert_eq!(sim.stats().tickets, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_cuts_a_hanging_request_short_and_records_it() {
    let sim = start_sim(SimConfig {
        hang_rate: 1.0,
        hang_for: Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await;
    let client = client_with(&sim.base_url(), "t", Duration::from_secs(30));
    let request = tokio::spawn(async move { client.update_ticket(&update("1", "P", "x")).await });
    assert!(eventually(Duration::from_secs(5), || sim.stats().hung == 1).await);
    let started = std::time::Instant::now();
    let ledger_probe = sim.base_url();
    sim.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited for the hang"
    );
    let reply = request.await.unwrap();
    assert_eq!(reply.class, Class::TransientInDoubt, "{reply:?}");
    // The listener is closed: nothing answers any more.
    assert!(
        reqwest::get(format!("{ledger_probe}/_sim/stats"))
            .await
            .is_err()
    );
}

#[test]
fn simulate_prints_its_address_and_serves_there() {
    let mut child = std::process::Command::cargo_bin("kapsync")
        .unwrap()
        .args(["simulate", "--port", "0"])
        .env_remove("KAPTURE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(second.contains("any token"), "{second}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reply = runtime.block_on(client(&url).update_ticket(&update("1", "P", "x")));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(reply.class, Class::Success, "{reply:?}");
}

#[test]
fn simulate_refuses_a_bad_rate_with_a_usage_error() {
    let output = std::process::Command::cargo_bin("kapsync")
        .unwrap()
        .args(["simulate", "--port", "0", "--drop-rate", "1.5"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--drop-rate"), "{stderr}");
}

//! Runs that look after themselves: rate control under random 429s, an unreachable or wrong
//! target, the canary, dry runs that change nothing, and readable progress.

use std::time::Duration;

use kapsync::simulator::SimConfig;

use crate::support::{Workspace, drain, eventually, fast_config, ingest_rows, start_sim};

/// Drains at `--rate 40` against a simulator that answers 1% of requests 429 (with
/// `Retry-After: 1`) whatever the rate, and returns the request rate achieved over `seconds`
/// after the first second, as a share of the configured rate.
async fn share_of_rate_40_with_random_429s(seconds: u64) -> f64 {
    const RATE: u32 = 40;
    let ws = Workspace::new();
    let rows = RATE as usize * (seconds as usize + 10);
    ingest_rows(&ws, rows, rows);
    let sim = start_sim(SimConfig {
        throttle_rate: 0.01,
        seed: 3,
        ..SimConfig::default()
    })
    .await;
    let base = sim.base_url();
    let db = ws.db();
    let mut config = fast_config(8, RATE);
    // As a real run: the server's Retry-After is honoured in full.
    config.throttle_cap = kapsync::engine::THROTTLE_CAP;
    let drained =
        tokio::spawn(async move { drain(&db, &base, &config, Duration::from_secs(5)).await });
    let wanted = u64::from(RATE) * (seconds + 2);
    // Generous: a run that has slowed down is waited for and then measured, not cut short.
    eventually(Duration::from_secs(seconds * 3 + 30), || {
        sim.stats().requests >= wanted
    })
    .await;
    let ledger = sim.ledger();
    let stats = sim.stats();
    drained.abort();
    sim.shutdown().await;
    assert!(stats.throttled > 0, "the simulator throttled: {stats:?}");
    let start = ledger[0].at_ms + 1000;
    let end = start + seconds * 1000;
    let in_window = ledger
        .iter()
        .filter(|e| e.at_ms >= start && e.at_ms < end)
        .count() as f64;
    in_window / seconds as f64 / f64::from(RATE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_429s_at_rate_40_keep_85_percent_of_it_for_15_s() {
    let share = share_of_rate_40_with_random_429s(15).await;
    assert!(share >= 0.85, "sustained {:.0}% of 40/s", share * 100.0);
}

/// The goal as stated: a minute. Run with `cargo test -- --ignored random_429s`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute long; the 15 s variant runs by default"]
async fn random_429s_at_rate_40_keep_85_percent_of_it_for_60_s() {
    let share = share_of_rate_40_with_random_429s(60).await;
    assert!(share >= 0.85, "sustained {:.0}% of 40/s", share * 100.0);
}

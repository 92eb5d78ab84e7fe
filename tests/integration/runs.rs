//! Runs that look after themselves: rate control under random 429s, an unreachable or wrong
//! target, the canary, dry runs that change nothing, and readable progress.

use std::time::Duration;

use kapsync::simulator::SimConfig;

use crate::support::{
    Workspace, drain, eventually, fast_config, ingest_rows, start_sim, stderr, stdout,
};

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

/// The issue's goal as stated: a minute. Run with `cargo test -- --ignored random_429s`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute long; the 15 s variant runs by default"]
async fn random_429s_at_rate_40_keep_85_percent_of_it_for_60_s() {
    let share = share_of_rate_40_with_random_429s(60).await;
    assert!(share >= 0.85, "sustained {:.0}% of 40/s", share * 100.0);
}

/// What a dry run must not change: every run's counts and source files.
fn database_state(ws: &Workspace) -> String {
    let runs = ws.kapsync().args(["runs", "--json"]).output().unwrap();
    let mut state = stdout(&runs);
    for name in ["nightly", "other"] {
        let status = ws
            .kapsync()
            .args(["status", "--json", "--run", name])
            .output()
            .unwrap();
        state.push_str(&stdout(&status));
    }
    state
}

const ROWS: &str = "ticket_id,sub_status,comment\n\
    100000000001,CL,closed\n\
    100000000002,P,waiting\n\
    ,OP,no ticket id\n";

#[test]
fn dry_runs_check_the_target_and_token_and_change_nothing() {
    let ws = Workspace::new();
    ws.file("old.csv", "ticket_id,sub_status\n100000000009,CL\n");
    ws.kapsync()
        .args(["ingest", "--run", "nightly", "old.csv"])
        .assert()
        .code(0);
    ws.file("rows.csv", ROWS);
    let before = database_state(&ws);
    let url = crate::support::closed_port_url();

    // Good target and token: the plan, exit 1 as the real sync would give for an invalid row.
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "dry-secret")
        .args([
            "sync",
            "rows.csv",
            "--run",
            "other",
            "--dry-run",
            "--base-url",
            &url,
        ])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("nothing is stored or sent"), "{text}");
    assert!(text.contains("Run other: 2 rows would be sent"), "{text}");
    assert!(text.contains("token: found in KAPTURE_TOKEN"), "{text}");
    assert!(!text.contains("dry-secret") && !stderr(&out).contains("dry-secret"));
    assert_eq!(database_state(&ws), before, "sync --dry-run stored nothing");

    // JSON: one object with both parts.
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "dry-secret")
        .args([
            "sync",
            "rows.csv",
            "--run",
            "other",
            "--dry-run",
            "--json",
            "--base-url",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["ingest"]["invalid"], 1, "{json}");
    // As a real sync: the earlier run's leftovers go first.
    assert_eq!(json["runs"][0]["run"], "nightly", "{json}");
    assert_eq!(json["runs"][1]["pending"], 2, "{json}");
    assert_eq!(json["checks"]["token_found"], true, "{json}");
    assert_eq!(database_state(&ws), before);

    // Targets a run refuses, and no token: exit 2, each named.
    for (flag, value, expected) in [
        ("--base-url", "http://example.com", "loopback"),
        ("--subdomain", "https://acme.kapturecrm.com", "only NAME"),
    ] {
        let out = ws
            .kapsync()
            .env("KAPTURE_TOKEN", "dry-secret")
            .args([
                "sync",
                "rows.csv",
                "--run",
                "other",
                "--dry-run",
                flag,
                value,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        assert!(stdout(&out).contains(expected), "{}", stdout(&out));
    }
    let out = ws
        .kapsync()
        .args(["run", "--run", "nightly", "--dry-run", "--base-url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("token: ERROR failed to find an API token"),
        "{}",
        stdout(&out)
    );
    assert_eq!(database_state(&ws), before, "nothing changed at all");
}

#[test]
fn sync_dry_run_creates_no_database() {
    let ws = Workspace::new();
    ws.file("rows.csv", ROWS);
    ws.kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args([
            "sync",
            "rows.csv",
            "--dry-run",
            "--base-url",
            "http://127.0.0.1:9",
        ])
        .assert()
        .code(1);
    assert!(!ws.db().exists(), "a dry run leaves no database behind");
}

#[tokio::test]
async fn a_request_that_never_left_names_why() {
    use kapsync::kapture::Unreached;
    let refused = crate::support::client(&crate::support::closed_port_url())
        .update_ticket(&crate::support::update("100000000001", "CL", "x"))
        .await;
    assert_eq!(refused.unreached, Some(Unreached::Refused), "{refused:?}");
    assert!(
        refused
            .message
            .as_deref()
            .unwrap()
            .contains("connection refused"),
        "{refused:?}"
    );
    let dns = crate::support::client("https://kapsync-test.invalid")
        .update_ticket(&crate::support::update("100000000001", "CL", "x"))
        .await;
    assert_eq!(dns.unreached, Some(Unreached::Dns), "{dns:?}");
    assert!(dns.message.as_deref().unwrap().contains("does not resolve"));
}

/// The run's rows per state, from `status --json`.
fn counts(ws: &Workspace) -> serde_json::Value {
    let out = ws
        .kapsync()
        .args(["status", "--json", "--run", "r"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    json["counts"].clone()
}

/// `kapsync run --run r` against `url` with a token, the given extra flags.
fn run_against(ws: &Workspace, url: &str, extra: &[&str]) -> std::process::Output {
    ws.kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args(["run", "--run", "r", "--rate", "0", "--base-url", url])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_closed_port_waits_then_stops_with_exit_6_and_fails_no_row() {
    let ws = Workspace::new();
    ingest_rows(&ws, 20, 20);
    let url = crate::support::closed_port_url();
    let out = run_against(&ws, &url, &["--unreachable-timeout", "2s"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(6), "{text}");
    assert!(text.contains("could not be reached"), "{text}");
    assert!(text.contains("connection refused"), "{text}");
    let c = counts(&ws);
    assert_eq!(
        (c["pending"].as_i64(), c["failed"].as_i64()),
        (Some(20), Some(0)),
        "{c}"
    );
    // Nothing was charged: the next run starts every row at its first attempt.
    let db = ws.db();
    let jobs = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::support::jobs_in(&db, Some("r")));
    assert!(jobs.iter().all(|j| j.attempts == 0), "{jobs:?}");
}

#[test]
fn a_host_that_does_not_resolve_is_a_configuration_error() {
    let ws = Workspace::new();
    ingest_rows(&ws, 20, 20);
    let out = run_against(&ws, "https://kapsync-test.invalid", &[]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("does not resolve"), "{text}");
    let c = counts(&ws);
    assert_eq!(
        (c["pending"].as_i64(), c["failed"].as_i64()),
        (Some(20), Some(0)),
        "{c}"
    );
}

// The binary is waited for with blocking calls: the mock server needs its own threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_501_server_and_one_answering_html_pages_are_configuration_errors() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    for (status, body) in [
        (501, "Not Implemented"),
        (200, "<html><body>Log in</body></html>"),
    ] {
        let ws = Workspace::new();
        ingest_rows(&ws, 40, 40);
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_string(body))
            .mount(&server)
            .await;
        let out = run_against(&ws, &server.uri(), &["--concurrency", "4"]);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(2), "{status}: {text}");
        assert!(text.contains("not Kapture"), "{text}");
        let requests = server.received_requests().await.unwrap().len();
        assert!(
            requests <= 3 + 4,
            "{requests} requests to a {status} server"
        );
        let c = counts(&ws);
        assert_eq!(
            (c["pending"].as_i64(), c["failed"].as_i64()),
            (Some(40), Some(0)),
            "{c}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_opens_late_is_waited_for_and_the_run_completes() {
    let ws = Workspace::new();
    ingest_rows(&ws, 20, 20);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kapsync"))
        .current_dir(ws.dir.path())
        .env("KAPTURE_TOKEN", "t")
        .args(["--no-progress", "--db"])
        .arg(ws.db())
        .args([
            "run",
            "--run",
            "r",
            "--rate",
            "0",
            "--unreachable-timeout",
            "60s",
        ])
        .args(["--base-url", &format!("http://{addr}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Some seconds with nothing listening, then Kapture "comes back".
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(child.try_wait().unwrap().is_none(), "the run waits");
    let sim = kapsync::simulator::Simulator::start(SimConfig::default(), addr)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stats = sim.stats();
    sim.shutdown().await;
    assert_eq!(status.code(), Some(0));
    assert_eq!(stats.succeeded, 20);
    let c = counts(&ws);
    assert_eq!(
        (c["succeeded"].as_i64(), c["failed"].as_i64()),
        (Some(20), Some(0)),
        "{c}"
    );
}

/// 100 rows whose sub_status a mapping typo leaves unmapped (`Solved`), or one such row.
fn rows_with_bad_status(rows: usize, bad: impl Fn(usize) -> bool) -> String {
    let mut csv = String::from("ticket_id,sub_status,comment\n");
    for i in 0..rows {
        let status = if bad(i) { "Solved" } else { "CL" };
        csv.push_str(&format!(
            "{},{status},c{i}\n",
            100_000_000_000u64 + i as u64
        ));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_stops_a_mapping_typo_and_lets_one_bad_row_through() {
    let sim = start_sim(SimConfig::default()).await;
    // Every row rejected alike: stop after at most N + concurrency requests, rows pending.
    let ws = Workspace::new();
    ws.file("rows.csv", rows_with_bad_status(100, |_| true));
    ws.kapsync()
        .args(["ingest", "--run", "r", "rows.csv"])
        .assert()
        .code(0);
    let out = run_against(
        &ws,
        &sim.base_url(),
        &["--canary", "20", "--concurrency", "4"],
    );
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("Invalid sub_status"), "{text}");
    assert!(text.contains("[values.sub_status]"), "{text}");
    let requests = sim.stats().requests;
    assert!(requests <= 20 + 4, "{requests} requests");
    let c = counts(&ws);
    assert_eq!(
        (c["pending"].as_i64(), c["failed"].as_i64()),
        (Some(100), Some(0)),
        "{c}"
    );

    // One bad row among good ones: it fails, the run goes on.
    let ws = Workspace::new();
    ws.file("rows.csv", rows_with_bad_status(60, |i| i == 3));
    ws.kapsync()
        .args(["ingest", "--run", "r", "rows.csv"])
        .assert()
        .code(0);
    let out = run_against(&ws, &sim.base_url(), &["--canary", "20"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let c = counts(&ws);
    assert_eq!(
        (c["succeeded"].as_i64(), c["failed"].as_i64()),
        (Some(59), Some(1)),
        "{c}"
    );
    sim.shutdown().await;
}

/// `text` without ANSI escape sequences (CSI `ESC [ ... final`, OSC `ESC ] ... BEL/ST`, and
/// two-byte `ESC x`).
#[cfg(unix)]
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The raw pseudo-terminal output of a drain of 60 rows at `--rate 20`, with the terminal set
/// to `columns` columns; `None` when util-linux `script` is missing.
#[cfg(unix)]
#[expect(clippy::print_stderr, reason = "a skipped case says so")]
async fn drain_under_a_terminal(columns: u16) -> Option<String> {
    let has_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("skipped: util-linux `script` is needed for a pseudo-terminal");
        return None;
    }
    let ws = Workspace::new();
    ingest_rows(&ws, 60, 60);
    let sim = start_sim(SimConfig::default()).await;
    let command = format!(
        "stty cols {columns} rows 30; exec '{}' --db '{}' run --run r --rate 20 --base-url '{}'",
        assert_cmd::cargo::cargo_bin("kapsync").display(),
        ws.db().display(),
        sim.base_url(),
    );
    let tty = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("KAPTURE_TOKEN", "t")
        .env_remove("RUST_LOG")
        .env_remove("COLUMNS")
        .current_dir(ws.dir.path())
        .output()
        .unwrap();
    sim.shutdown().await;
    let text = stdout(&tty);
    assert!(tty.status.success(), "{text}");
    assert_eq!(counts(&ws)["succeeded"], 60, "{text}");
    Some(text)
}

/// Issue 11: the bar stays one line on a real terminal of 80 and of 60 columns: every line
/// drawn fits the width, it is redrawn in place several times, no line holds two bars, and
/// each shows the total (issue 14: the first draw said `0/0`).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bar_stays_one_line_on_a_terminal_of_80_and_60_columns() {
    for columns in [80, 60] {
        let Some(raw) = drain_under_a_terminal(columns).await else {
            return;
        };
        let text = strip_ansi(&raw);
        let bars: Vec<&str> = text
            .split(['\r', '\n'])
            .filter(|line| line.contains("r ["))
            .collect();
        assert!(bars.len() >= 2, "{columns}: fewer than 2 draws in {raw:?}");
        for line in &bars {
            let width = console::measure_text_width(line);
            assert!(
                width <= usize::from(columns),
                "{columns}: {width} wide: {line:?}"
            );
            assert_eq!(
                line.matches("r [").count(),
                1,
                "{columns}: two bars in {line:?}"
            );
            assert!(
                line.matches(" | ").count() <= 1,
                "{columns}: two bars in {line:?}"
            );
            // The total is known from the first draw: never "0/0".
            assert!(line.contains("/60 "), "{columns}: no total in {line:?}");
        }
    }
}

//! `kapsync report`: its numbers against `status --json` and the attempts table (computed here
//! with our own SQL), and a page that is well formed, self-contained and holds no secret.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sqlx::sqlite::SqlitePool;
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{Workspace, ingest_rows, start_sim, stderr, stdout};

const TOKEN: &str = "report-canary-token-5f1d";

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_string(r#"{"status":"success","message":"ok","ticket":{}}"#)
}

/// Answers by comment text: `rejected` fails for good, `throttle-once` gets one 429,
/// `flaky-once` one 500, `halt` an invalid key; everything else succeeds.
async fn kapture() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("rejected"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(r#"{"status":"failed","message":"Invalid sub_status"}"#),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("throttle-once"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_string(r#"{"status":"failed","message":"slow down"}"#),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("flaky-once"))
        .respond_with(ResponseTemplate::new(500).set_body_string("<html>oops</html>"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains("halt"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(r#"{"status":"failed","message":"Invalid Auth Key"}"#),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok())
        .with_priority(10)
        .mount(&server)
        .await;
    server
}

const NIGHT_ONE: &str = "ticket_id,sub_status,comment
900000000001,CL,fine
900000000002,CL,fine
900000000003,CL,throttle-once
900000000004,CL,flaky-once
900000000005,CL,rejected
900000000006,CL,rejected again
900000000007,CL,rejected then fixed
900000000008,,no status
900000000009,CL,fine
900000000010,,no status either
900000000007,CL,the fix
900000000011,CL,fine
,CL,no ticket id
";

const NIGHT_TWO: &str = "ticket_id,sub_status,comment
900000000020,CL,halt
900000000021,CL,fine
900000000022,CL,fine
";

fn ingest(ws: &Workspace, name: &str, text: &str) {
    let file = ws.file(name, text);
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "night"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
}

fn drain(ws: &Workspace, url: &str) -> Option<i32> {
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", TOKEN)
        .args([
            "run",
            "--run",
            "night",
            "--rate",
            "50",
            "--concurrency",
            "1",
        ])
        .args(["--base-url", url])
        .output()
        .unwrap();
    out.status.code()
}

fn json_of(ws: &Workspace, args: &[&str]) -> Value {
    let out = ws.kapsync().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

async fn pool(db: &Path) -> SqlitePool {
    SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_agrees_with_status_and_the_attempts_table() {
    let ws = Workspace::new();
    let server = kapture().await;
    ingest(&ws, "night-1.csv", NIGHT_ONE);
    assert_eq!(
        drain(&ws, &server.uri()),
        Some(1),
        "rejections end a run with exit 1"
    );
    ingest(&ws, "night-2.csv", NIGHT_TWO);
    assert_eq!(
        drain(&ws, &server.uri()),
        Some(3),
        "the invalid key halts the run"
    );

    let status = json_of(&ws, &["status", "--run", "night", "--json"]);
    let report = json_of(&ws, &["report", "--run", "night", "--json"]);
    let run = &report["runs"][0];
    assert_eq!(run["counts"], status["counts"]);
    assert_eq!(run["total"], status["total"]);
    assert_eq!(report["total"]["counts"], status["counts"]);

    let db = pool(&ws.db()).await;
    // Failures: open, and resolved by a later row of the same sync key (the ticket, without
    // a `[delta] key`) that succeeded or was unchanged.
    let (failed, resolved): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(EXISTS (SELECT 1 FROM jobs l WHERE l.sync_key = f.sync_key
                  AND l.id > f.id AND (l.state = 'succeeded'
                       OR (l.state = 'skipped' AND l.error_class = 'unchanged')))), 0)
         FROM jobs f WHERE f.state = 'failed'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        (failed, resolved),
        (3, 1),
        "two rejections stay open, one was fixed"
    );
    assert_eq!(run["failed_resolved"], resolved);
    assert_eq!(run["failed_open"], failed - resolved);

    // Requests by class, in total and summed over the time buckets.
    let classes: Vec<(String, i64)> =
        sqlx::query_as("SELECT class, count(*) FROM attempts GROUP BY class")
            .fetch_all(&db)
            .await
            .unwrap();
    let classes: BTreeMap<String, i64> = classes.into_iter().collect();
    for class in ["success", "rejected", "transient", "throttled", "auth"] {
        assert!(
            classes.get(class).is_some_and(|n| *n > 0),
            "{class}: {classes:?}"
        );
    }
    let buckets = report["timeline"]["buckets"].as_array().unwrap();
    for (class, n) in &classes {
        assert_eq!(report["problems"]["requests"][class], *n, "{class}");
        let summed: i64 = buckets
            .iter()
            .map(|b| b["requests"][class].as_i64().unwrap())
            .sum();
        assert_eq!(summed, *n, "{class} over the buckets");
    }
    let sum = |key: &str| -> i64 { buckets.iter().map(|b| b[key].as_i64().unwrap()).sum() };
    assert_eq!(
        sum("succeeded"),
        status["counts"]["succeeded"].as_i64().unwrap()
    );
    assert_eq!(sum("failed"), status["counts"]["failed"].as_i64().unwrap());
    assert!(
        buckets
            .iter()
            .any(|b| b["requests"]["auth"].as_i64() > Some(0))
    );

    // Latency percentiles per bucket, from the raw durations.
    let width = report["timeline"]["bucket_seconds"].as_i64().unwrap() * 1000;
    for b in buckets {
        let start = b["start"].as_i64().unwrap();
        let durations: Vec<(i64,)> = sqlx::query_as(
            "SELECT duration_ms FROM attempts WHERE started_at >= ? AND started_at < ?
             ORDER BY duration_ms",
        )
        .bind(start)
        .bind(start + width)
        .fetch_all(&db)
        .await
        .unwrap();
        let n = durations.len();
        for (key, q) in [("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)] {
            let expected = (n > 0).then(|| {
                let rank = ((q * n as f64).ceil() as usize).max(1);
                kapsync::store::latency_bin(durations[rank - 1].0)
            });
            assert_eq!(b[key].as_i64(), expected, "{key} of bucket {start}");
        }
    }

    // What went wrong, with examples that say where each row came from.
    let problems = &report["problems"];
    let messages = problems["failed_messages"].as_array().unwrap();
    assert_eq!(messages[0]["message"], "Invalid sub_status");
    assert_eq!(messages[0]["count"], 3);
    let example = &messages[0]["examples"][0];
    assert_eq!(example["ticket_id"], "900000000005");
    assert_eq!(example["line"], 6);
    assert!(example["file"].as_str().unwrap().ends_with("night-1.csv"));
    let reasons = problems["invalid_reasons"].as_array().unwrap();
    let invalid: i64 = reasons.iter().map(|g| g["count"].as_i64().unwrap()).sum();
    assert_eq!(invalid, status["counts"]["invalid"].as_i64().unwrap());
    let export = problems["export_invalid"][0].as_str().unwrap();
    assert!(
        export.contains("--db ") && export.contains("export --run night --state invalid"),
        "{export}"
    );
    // Each group's command, pasted as printed, exports exactly that group's rows.
    let mut pasted = 0;
    for (state, key) in [
        ("failed", "failed_messages"),
        ("invalid", "invalid_reasons"),
    ] {
        for group in problems[key].as_array().unwrap() {
            let message = group["message"].as_str().unwrap();
            let expected: Vec<(String, i64)> = sqlx::query_as(
                "SELECT s.path, j.line FROM jobs j JOIN source_files s ON s.id = j.source_id
                 WHERE j.state = ? AND j.error_message = ? ORDER BY j.id",
            )
            .bind(state)
            .bind(message)
            .fetch_all(&db)
            .await
            .unwrap();
            let exports = group["exports"].as_array().unwrap();
            assert_eq!(exports.len(), 1, "{group}");
            assert_eq!(exports[0]["rows"], expected.len() as i64, "{group}");
            assert_eq!(exports[0]["exported"], exports[0]["rows"], "{group}");
            let command = exports[0]["command"].as_str().unwrap();
            assert!(command.contains(" --grep "), "{command}");
            assert_eq!(exported_rows(&ws, command), expected, "{command}");
            pasted += 1;
        }
    }
    assert!(
        pasted >= 3,
        "a failed group and two invalid reasons: {pasted} {problems}"
    );

    // Settings: both drains, with the target and the flags, never the token.
    let drains = report["settings"][0]["drains"].as_array().unwrap();
    assert_eq!(drains.len(), 2);
    assert_eq!(drains[0]["target"], server.uri());
    assert_eq!(drains[0]["rate"], 50.0);
    assert_eq!(drains[0]["concurrency"], 1);
    assert_eq!(drains[1]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(report["settings"][0]["mappings"][0]["mapping"], "");
    assert!(!report.to_string().contains(TOKEN));

    // The page: well formed, no script, no address to fetch, no token.
    let page = ws.dir.path().join("report.html");
    let out = ws
        .kapsync()
        .args(["report", "--run", "night", "-o"])
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    check_well_formed(&html);
    let lower = html.to_lowercase();
    for banned in ["<script", "http://", "https://", "url(", "@import", TOKEN] {
        assert!(
            !lower.contains(&banned.to_lowercase()),
            "the page holds {banned:?}"
        );
    }
    for part in [
        "Where it stands",
        "Over time",
        "What went wrong",
        "Settings",
        "<svg",
    ] {
        assert!(html.contains(part), "the page lacks {part:?}");
    }
    assert!(html.contains("Invalid sub_status") && html.contains("night-1.csv:6"));
    let first = problems["invalid_reasons"][0]["exports"][0]["command"]
        .as_str()
        .unwrap();
    assert!(
        html.contains(&kapsync::report::html::esc(first)),
        "the page lacks {first}"
    );

    // Every run at once reads the same totals.
    let all = json_of(&ws, &["report", "--all", "--json"]);
    assert_eq!(all["total"]["counts"], status["counts"]);
    server.reset().await;
}

/// A server that accepts 20 requests a second, asked for 100: the adaptive limit is cut, the
/// drain records the cut (through the writer), and the report shows a limit in force below
/// the configured rate in the intervals it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_shows_the_limit_in_force_not_only_the_configured_rate() {
    let ws = Workspace::new();
    ingest_rows(&ws, 150, 150);
    let sim = start_sim(kapsync::simulator::SimConfig {
        rate_limit: 20,
        ..Default::default()
    })
    .await;
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", TOKEN)
        .args(["run", "--run", "r", "--rate", "100", "--concurrency", "8"])
        .args(["--base-url", &sim.base_url()])
        .output()
        .unwrap();
    let throttled = sim.stats().throttled;
    sim.shutdown().await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(throttled > 0, "the server answered no 429");

    let db = pool(&ws.db()).await;
    let recorded: Vec<(i64, Option<f64>)> =
        sqlx::query_as("SELECT at, rate FROM rate_limits ORDER BY at")
            .fetch_all(&db)
            .await
            .unwrap();
    let lowest = recorded
        .iter()
        .filter_map(|(_, rate)| *rate)
        .fold(f64::INFINITY, f64::min);
    assert!(lowest < 100.0, "no lowered limit recorded: {recorded:?}");
    // At most one record a second (the writer coalesces), and never one per row.
    for pair in recorded.windows(2) {
        assert!(pair[1].0 > pair[0].0, "{recorded:?}");
    }
    assert!(recorded.len() < 150, "{recorded:?}");

    let report = json_of(&ws, &["report", "--run", "r", "--json"]);
    let buckets = report["timeline"]["buckets"].as_array().unwrap();
    let lowered: Vec<&Value> = buckets
        .iter()
        .filter(|b| b["rate_limit"].as_f64().is_some_and(|l| l < 100.0))
        .collect();
    assert!(!lowered.is_empty(), "{buckets:?}");
    let mut lowest_shown = f64::INFINITY;
    for b in &lowered {
        assert_eq!(b["configured_rate"], 100.0, "{b}");
        let min = b["rate_limit_min"].as_f64().unwrap();
        assert!(
            min >= lowest - 1e-9 && min <= b["rate_limit"].as_f64().unwrap(),
            "{b}"
        );
        lowest_shown = lowest_shown.min(min);
    }
    assert!(
        (lowest_shown - lowest).abs() < 1e-9,
        "{lowest_shown} vs {lowest}"
    );
    let html = ws
        .kapsync()
        .args(["report", "--run", "r"])
        .output()
        .unwrap();
    assert!(stdout(&html).contains("limit in force"));
}

/// Runs a printed `kapsync ... export ... -o FILE` command through the shell in the
/// workspace, as pasted, and returns the (file, line) of each row it wrote.
fn exported_rows(ws: &Workspace, command: &str) -> Vec<(String, i64)> {
    let rest = command.strip_prefix("kapsync ").expect("a kapsync command");
    let binary = assert_cmd::cargo::cargo_bin("kapsync");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("'{}' {rest}", binary.display()))
        .current_dir(ws.dir.path())
        .env_remove("KAPSYNC_DB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{command}: {}", stderr(&out));
    let file = command.rsplit(" -o ").next().unwrap().trim_matches('\'');
    let mut reader = csv::Reader::from_path(ws.dir.path().join(file)).unwrap();
    reader
        .deserialize::<BTreeMap<String, String>>()
        .map(|row| {
            let row = row.unwrap();
            (
                row["source_file"].clone(),
                row["source_line"].parse().unwrap(),
            )
        })
        .collect()
}

/// Tags open and close in order (void elements and `/>` aside); attributes are quoted.
fn check_well_formed(html: &str) {
    const VOID: [&str; 6] = ["meta", "br", "hr", "img", "input", "link"];
    assert!(html.starts_with("<!DOCTYPE html>"));
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        if rest.starts_with("!DOCTYPE") {
            continue;
        }
        let end = rest.find('>').expect("every tag closes");
        let tag = &rest[..end];
        assert!(!tag.contains('<'), "a tag inside a tag: {tag}");
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in <{tag}>"
        );
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().unwrap_or_default();
            assert_eq!(open, name.trim(), "</{name}> closes <{open}>");
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        if name == "style" {
            let close = rest.find("</style>").expect("style closes");
            rest = &rest[close..];
        }
        stack.push(name);
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

/// Ingests `text` into run `run` with the mapping file `mapping` (`None`: no mapping).
fn ingest_with(ws: &Workspace, run: &str, name: &str, text: &str, mapping: Option<&Path>) {
    let file = ws.file(name, text);
    let mut cmd = ws.kapsync();
    cmd.args(["ingest", "--run", run]).arg(&file);
    if let Some(mapping) = mapping {
        cmd.arg("--mapping").arg(mapping);
    }
    let out = cmd.output().unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
}

fn drain_run(ws: &Workspace, run: &str, url: &str) -> Option<i32> {
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", TOKEN)
        .args(["run", "--run", run, "--rate", "50", "--base-url", url])
        .output()
        .unwrap();
    out.status.code()
}

/// With a `[delta] key` (one key per comment), a failed comment is resolved only by a later
/// row of the same comment: a later success of its ticket on another comment leaves it open.
/// `status` and `report` say the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_report_resolve_failures_by_the_same_sync_key() {
    let ws = Workspace::new();
    let server = kapture().await;
    let mapping = ws.file(
        "events.toml",
        "[columns]\nticket_id = \"Ticket\"\nsub_status = \"Status\"\ncomment = \"Body\"\n\
         [delta]\nkey = [\"Comment Id\"]\n",
    );
    let header = "Ticket,Status,Comment Id,Body\n";
    // Both comments are rejected on the first night.
    ingest_with(
        &ws,
        "one",
        "one.csv",
        &format!("{header}900000000031,CL,c1,rejected\n900000000032,CL,c3,rejected\n"),
        Some(&mapping),
    );
    assert_eq!(drain_run(&ws, "one", &server.uri()), Some(1));
    // The next night: ticket 31 succeeds on another comment (c2), ticket 32's comment c3
    // itself goes through.
    ingest_with(
        &ws,
        "two",
        "two.csv",
        &format!("{header}900000000031,CL,c2,fine\n900000000032,CL,c3,fixed\n"),
        Some(&mapping),
    );
    assert_eq!(drain_run(&ws, "two", &server.uri()), Some(0));

    let status = json_of(&ws, &["status", "--run", "one", "--json"]);
    assert_eq!(status["counts"]["failed"], 2);
    assert_eq!(status["failures"]["open"], 1, "{status}");
    assert_eq!(status["failures"]["resolved"], 1, "{status}");
    for args in [
        &["report", "--run", "one", "--json"][..],
        &["report", "--all", "--json"][..],
    ] {
        let report = json_of(&ws, args);
        let run = &report["runs"][0];
        assert_eq!(run["run"], "one");
        assert_eq!(run["failed_open"], status["failures"]["open"], "{args:?}");
        assert_eq!(
            run["failed_resolved"], status["failures"]["resolved"],
            "{args:?}"
        );
    }
    server.reset().await;
}

//! Snapshots of the text a person reads: the summaries, tables and error messages of the real
//! binary, with what changes from one run to the next (times, rates, ports, paths, pids)
//! redacted, so a change of wording shows up as a reviewed diff.
//!
//! Each snapshot is a transcript: the command line after the workspace's global flags, the
//! exit code, standard output and standard error.

use kapsync::engine::RunnerLock;
use kapsync::simulator::SimConfig;
use serde_json::Value;

use crate::support::{Workspace, closed_port_url, start_sim, stderr, stdout};

/// Three rows the simulator accepts.
const GOOD_ROWS: &str = "ticket_id,sub_status,comment\n\
    100000000001,CL,closed on the phone\n\
    100000000002,P,waiting for the courier\n\
    100000000003,OP,reopened by the customer\n";

/// Two rows the simulator accepts and one whose sub status it rejects.
const ONE_REJECTED: &str = "ticket_id,sub_status,comment\n\
    100000000001,CL,closed on the phone\n\
    100000000002,ZZ,no such sub status\n\
    100000000003,OP,reopened by the customer\n";

/// Three valid rows and three invalid ones, and a column kapsync does not use.
const SOME_INVALID: &str = "ticket_id,sub_status,comment,callback_time,Agent\n\
    100000000001,CL,fine,,asha\n\
    ,CL,no ticket id,,asha\n\
    100000000003,,no sub status,,ravi\n\
    100000000004,P,callback in the wrong form,31/12/2026 10:00,ravi\n\
    100000000005,P,callback in the right form,2026-12-31 10:00:00,ravi\n\
    100000000006,RS,fine,,asha\n";

/// A pattern matching `text` literally (the regex crate's meta characters escaped).
fn literal(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

/// Snapshot settings that redact what varies between runs of the same test.
fn redacting(ws: &Workspace) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    // The workspace is a new temporary directory each time; --db points into it.
    settings.add_filter(&literal(&ws.dir.path().display().to_string()), "[WS]");
    // The simulator's port and the unused ports are picked by the OS.
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    // The runner lock names the process that holds it.
    settings.add_filter(r"\(pid \d+\)", "(pid [PID])");
    // A drain's wall-clock time and mean rate; the request count stays.
    settings.add_filter(
        r"(\d+ requests? in )[^,]+, [0-9.]+/s\)",
        "${1}[DURATION], [RATE]/s)",
    );
    // How long ago a run was last active, and its recent pace.
    settings.add_filter(r"\([0-9a-z ]+ ago\)", "([AGO])");
    settings.add_filter(
        r"[0-9.]+ rows/s over its last minute",
        "[RATE] rows/s over its last minute",
    );
    // Run creation times (RFC 3339, UTC). Dates inside the rows have no `T`/`Z` and stay.
    settings.add_filter(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z",
        "[TIMESTAMP]",
    );
    settings
}

/// Compares `text` with the named snapshot, redacted.
fn check(name: &str, ws: &Workspace, text: &str) {
    redacting(ws).bind(|| insta::assert_snapshot!(name, text));
}

/// Runs the binary with `args` after `cmd`'s settings and returns its transcript.
fn transcript(cmd: &mut assert_cmd::Command, args: &[&str]) -> String {
    let out = cmd.args(args).output().expect("the binary runs");
    let code = out
        .status
        .code()
        .map_or_else(|| "none (killed by a signal)".to_owned(), |c| c.to_string());
    format!(
        "$ kapsync {}\nexit code: {code}\n--- stdout ---\n{}--- stderr ---\n{}",
        args.join(" "),
        stdout(&out),
        stderr(&out)
    )
}

/// Ingests `csv` as `name` into the run `run`, expecting exit code `code`.
fn ingest(ws: &Workspace, run: &str, name: &str, csv: &str, code: i32) {
    ws.file(name, csv);
    ws.kapsync()
        .args(["ingest", "--run", run, name])
        .assert()
        .code(code);
}

// The binary is waited for with blocking calls: the simulator needs its own threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_summary_when_every_row_succeeds_and_then_nothing_is_left() {
    let ws = Workspace::new();
    ingest(&ws, "nightly", "rows.csv", GOOD_ROWS, 0);
    let sim = start_sim(SimConfig::default()).await;
    let base = sim.base_url();
    let run = |ws: &Workspace| {
        transcript(
            ws.kapsync().env("KAPTURE_TOKEN", "t"),
            &["run", "--rate", "0", "--base-url", &base],
        )
    };
    let first = run(&ws);
    let second = run(&ws);
    sim.shutdown().await;
    check("run_summary_all_succeeded", &ws, &first);
    check("run_summary_nothing_to_send", &ws, &second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_summary_with_a_row_the_server_rejects() {
    let ws = Workspace::new();
    ingest(&ws, "nightly", "rows.csv", ONE_REJECTED, 0);
    let sim = start_sim(SimConfig::default()).await;
    let text = transcript(
        ws.kapsync().env("KAPTURE_TOKEN", "t"),
        &["run", "--rate", "0", "--base-url", &sim.base_url()],
    );
    sim.shutdown().await;
    check("run_summary_rejected_row", &ws, &text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_summary_when_the_server_fails_every_request() {
    let ws = Workspace::new();
    ingest(&ws, "nightly", "rows.csv", GOOD_ROWS, 0);
    // Every answer is a 5xx. Which of 500, 502 and 503 depends only on the seed and the
    // request's sequence number, and every row takes exactly --max-attempts requests, so the
    // error counts repeat whatever order the rows go in.
    let sim = start_sim(SimConfig {
        fail_rate: 1.0,
        seed: 7,
        ..SimConfig::default()
    })
    .await;
    let text = transcript(
        ws.kapsync().env("KAPTURE_TOKEN", "t"),
        &[
            "run",
            "--rate",
            "0",
            "--max-attempts",
            "2",
            "--base-url",
            &sim.base_url(),
        ],
    );
    sim.shutdown().await;
    check("run_summary_server_errors", &ws, &text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_halts_with_exit_3_when_the_key_is_refused() {
    let ws = Workspace::new();
    ingest(&ws, "nightly", "rows.csv", GOOD_ROWS, 0);
    let sim = start_sim(SimConfig {
        token: Some("right".into()),
        ..SimConfig::default()
    })
    .await;
    // One worker: the first refusal halts the run before a second request is sent, so the
    // request count is the same every time.
    let text = transcript(
        ws.kapsync().env("KAPTURE_TOKEN", "wrong"),
        &[
            "run",
            "--rate",
            "0",
            "--concurrency",
            "1",
            "--base-url",
            &sim.base_url(),
        ],
    );
    sim.shutdown().await;
    check("run_auth_halt", &ws, &text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_runs_tables_show_every_state() {
    let ws = Workspace::new();
    // "nightly" ends with succeeded, failed and invalid rows; "backlog-2026-03" stays pending.
    ws.file("rejected.csv", ONE_REJECTED);
    ws.file("invalid.csv", SOME_INVALID);
    ws.kapsync()
        .args(["ingest", "--run", "nightly", "rejected.csv", "invalid.csv"])
        .assert()
        .code(1);
    let sim = start_sim(SimConfig::default()).await;
    ws.kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args(["run", "--run", "nightly", "--rate", "0"])
        .args(["--base-url", &sim.base_url()])
        .assert()
        .code(1);
    sim.shutdown().await;
    ingest(&ws, "backlog-2026-03", "backlog.csv", GOOD_ROWS, 0);

    let status = transcript(&mut ws.kapsync(), &["status", "--run", "nightly"]);
    check("status_table", &ws, &status);
    let latest = transcript(&mut ws.kapsync(), &["status"]);
    check("status_table_latest_run", &ws, &latest);
    let runs = transcript(&mut ws.kapsync(), &["runs"]);
    check("runs_table", &ws, &runs);
}

#[test]
fn dry_run_shows_the_first_bodies_and_the_estimate() {
    let ws = Workspace::new();
    ingest(&ws, "first", "first.csv", GOOD_ROWS, 0);
    ingest(&ws, "second", "second.csv", ONE_REJECTED, 0);
    // Nothing is sent, so nothing needs to listen there.
    let url = closed_port_url();
    let text = transcript(
        ws.kapsync().env("KAPTURE_TOKEN", "dry-run-secret"),
        &["run", "--dry-run", "--rate", "2", "--base-url", &url],
    );
    assert!(!text.contains("dry-run-secret"), "{text}");
    check("dry_run_with_target", &ws, &text);
    let text = transcript(
        &mut ws.kapsync(),
        &["run", "--dry-run", "--rate", "0", "--run", "second"],
    );
    check("dry_run_without_target_or_rate_limit", &ws, &text);
}

#[test]
fn dry_run_with_nothing_pending() {
    let ws = Workspace::new();
    ingest(&ws, "empty", "header.csv", "ticket_id,sub_status\n", 0);
    let text = transcript(
        ws.kapsync().env("KAPTURE_TOKEN", "t"),
        &["run", "--dry-run", "--base-url", &closed_port_url()],
    );
    check("dry_run_nothing_pending", &ws, &text);
}

#[test]
fn ingest_summary_lists_each_invalid_row() {
    let ws = Workspace::new();
    ws.file("export.csv", SOME_INVALID);
    let text = transcript(
        &mut ws.kapsync(),
        &["ingest", "--run", "nightly", "export.csv"],
    );
    check("ingest_summary_invalid_rows", &ws, &text);
    // The same content again adds nothing.
    let text = transcript(
        &mut ws.kapsync(),
        &["ingest", "--run", "nightly", "export.csv"],
    );
    check("ingest_summary_already_ingested", &ws, &text);
}

#[test]
fn ingest_summary_of_the_bad_rows_fixture_shows_the_first_reasons() {
    let ws = Workspace::new();
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bad/bad_rows.csv"
    ))
    .unwrap();
    ws.file("bad_rows.csv", fixture);
    let text = transcript(
        &mut ws.kapsync(),
        &["ingest", "--run", "nightly", "bad_rows.csv"],
    );
    check("ingest_summary_bad_rows_fixture", &ws, &text);
}

#[test]
fn error_for_a_missing_input_file() {
    let ws = Workspace::new();
    let text = transcript(
        &mut ws.kapsync(),
        &["ingest", "--run", "nightly", "missing.csv"],
    );
    check("error_missing_input_file", &ws, &text);
}

#[test]
fn errors_for_mapping_files() {
    let ws = Workspace::new();
    ws.file("export.csv", "Id,Status,Comment\n100000000001,CL,fine\n");
    ws.file("unknown_field.toml", "[columns]\nticket = \"Id\"\n");
    ws.file("syntax.toml", "[columns]\nticket_id = \"Id\n");
    ws.file(
        "no_such_column.toml",
        "[columns]\ncomment = \"Latest Comment\"\n",
    );
    for (name, mapping) in [
        ("error_mapping_unknown_field", "unknown_field.toml"),
        ("error_mapping_toml_syntax", "syntax.toml"),
        ("error_mapping_column_not_in_file", "no_such_column.toml"),
        ("error_mapping_file_missing", "missing.toml"),
    ] {
        let text = transcript(
            &mut ws.kapsync(),
            &["ingest", "--run", "m", "--mapping", mapping, "export.csv"],
        );
        check(name, &ws, &text);
    }
    // What the failed ingests left behind: nothing, though the missing column is found only
    // after the run "m" was created.
    let text = transcript(&mut ws.kapsync(), &["runs"]);
    check("runs_after_failed_ingests", &ws, &text);
}

#[test]
fn error_when_another_runner_holds_the_lock() {
    let ws = Workspace::new();
    ingest(&ws, "nightly", "rows.csv", GOOD_ROWS, 0);
    // This test process holds the lock a running `kapsync run` would hold: the same file
    // lock, so the refusal is the one a second runner meets, without waiting for a first
    // runner to get going.
    let _held = RunnerLock::acquire(&ws.db()).unwrap();
    let text = transcript(
        ws.kapsync().env("KAPTURE_TOKEN", "t"),
        &["run", "--base-url", &closed_port_url()],
    );
    check("error_runner_lock_held", &ws, &text);
}

#[test]
fn errors_for_a_missing_run_database_or_target() {
    let ws = Workspace::new();
    let text = transcript(&mut ws.kapsync(), &["status"]);
    check("error_no_database", &ws, &text);
    ingest(&ws, "nightly", "rows.csv", GOOD_ROWS, 0);
    let text = transcript(&mut ws.kapsync(), &["status", "--run", "nope"]);
    check("error_no_such_run", &ws, &text);
    let text = transcript(ws.kapsync().env("KAPTURE_TOKEN", "t"), &["run"]);
    check("error_no_target", &ws, &text);
    let text = transcript(&mut ws.kapsync(), &["run", "--subdomain", "acme"]);
    check("error_no_token", &ws, &text);
}

/// The filters redact only what varies: a request count, the dates inside rows and the rest
/// of a path stay.
#[test]
fn the_filters_hide_only_what_varies() {
    let ws = Workspace::new();
    let text = format!(
        "Run r: 1 succeeded, 0 failed just now (12 requests in 1m 3s, 40.5/s)\n\
         Run nightly (created 2026-11-28T12:17:50Z)\n\
         callback 2026-12-31 10:00:00, 2026-02-28T10:00:00 from the file\n\
         POST http://127.0.0.1:18777/update-ticket-from-other-source.html/v.2.0\n\
         another kapsync runner (pid 4242) is draining {}\n",
        ws.db().display()
    );
    check("filters_self_check", &ws, &text);
}

#[test]
fn ingest_summary_lists_source_values_and_what_each_became() {
    let ws = Workspace::new();
    ws.file(
        "zendesk.csv",
        "Id,Status,Latest Comment\n\
         1,solved,a\n2,hold,b\n3,Solved,c\n4,hodl,d\n5,pending,e\n6,weird,f\n7,hold,g\n",
    );
    // A typo in the table (hodl for hold) and a value no table has.
    ws.file(
        "m.toml",
        "[columns]\nticket_id = \"Id\"\nsub_status = \"Status\"\n\
         [values.sub_status]\nsolved = \"RS\"\nhodl = \"PE\"\npending = \"P\"\n\
         [allowed]\nsub_status = [\"RS\", \"PE\", \"P\", \"hold\"]\n",
    );
    let text = transcript(
        &mut ws.kapsync(),
        &["ingest", "--run", "r", "--mapping", "m.toml", "zendesk.csv"],
    );
    check("ingest_summary_value_distribution", &ws, &text);
}

#[test]
fn ingest_summary_names_the_delimiter_and_encoding_it_read_with() {
    let ws = Workspace::new();
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bad/european_excel.csv"
    ))
    .unwrap();
    ws.file("excel.csv", fixture);
    // Without --encoding: the rows with accents are refused, and the hint names the flag.
    let text = transcript(
        &mut ws.kapsync(),
        &[
            "ingest",
            "--run",
            "r",
            "--sub-statuses",
            "OP,P,RS,CL",
            "excel.csv",
        ],
    );
    check("ingest_summary_windows_1252_hint", &ws, &text);
}

#[test]
fn mapping_init_proposes_a_mapping_that_ingests_as_it_is() {
    let ws = Workspace::new();
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bad/european_excel.csv"
    ))
    .unwrap();
    ws.file("excel.csv", fixture);
    let text = transcript(
        &mut ws.kapsync(),
        &["mapping", "init", "excel.csv", "-o", "mapping.toml"],
    );
    assert!(text.contains("exit code: 0"), "{text}");
    let toml = std::fs::read_to_string(ws.dir.path().join("mapping.toml")).unwrap();
    check("mapping_init_european_excel", &ws, &toml);
    // Accepted as it is: every row is read; only the impossible date is invalid.
    let text = transcript(
        &mut ws.kapsync(),
        &[
            "ingest",
            "--run",
            "r",
            "--mapping",
            "mapping.toml",
            "excel.csv",
        ],
    );
    check("mapping_init_output_ingested", &ws, &text);
    // It refuses to overwrite.
    let out = ws
        .kapsync()
        .args(["mapping", "init", "excel.csv", "-o", "mapping.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A JSONL export with its own key names: the keys stand in for columns, the proposal needs
/// no [source], and ingest takes the file with it as it is (callback times in its own format).
#[test]
fn mapping_init_proposes_a_mapping_for_jsonl_keys() {
    let ws = Workspace::new();
    ws.file(
        "tickets.jsonl",
        "{\"Ticket No\": 100000000001, \"Status\": \"Open\", \"Note\": \"first\", \
         \"Follow-up at\": \"24/12/2026 17:30\", \"Agent\": \"ana\"}\n\
         not json\n\n\
         {\"Ticket No\": \"100000000002\", \"Status\": \"closed\", \"Note\": \"second\"}\n\
         {\"Ticket No\": \"100000000003\", \"Status\": \"Open\", \"Note\": \"third\", \
         \"Channel\": \"mail\"}\n",
    );
    let mut text = transcript(
        &mut ws.kapsync(),
        &["mapping", "init", "tickets.jsonl", "-o", "mapping.toml"],
    );
    assert!(text.contains("exit code: 0"), "{text}");
    text.push_str("--- mapping.toml ---\n");
    text.push_str(&std::fs::read_to_string(ws.dir.path().join("mapping.toml")).unwrap());
    text.push_str(&transcript(
        &mut ws.kapsync(),
        &[
            "ingest",
            "--run",
            "r",
            "--mapping",
            "mapping.toml",
            "tickets.jsonl",
        ],
    ));
    check("mapping_init_jsonl", &ws, &text);
    let rows = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(ws.jobs(Some("r")));
    let valid: Vec<Value> = rows
        .iter()
        .filter_map(|r| r.payload.as_deref())
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert_eq!(valid.len(), 3, "{rows:?}");
    assert_eq!(valid[0]["ticket_id"], "100000000001");
    assert_eq!(valid[0]["sub_status"], "Open");
    assert_eq!(valid[0]["comment"], "first");
    assert_eq!(valid[0]["callback_time"], "2026-12-24 17:30:00");
}

#[cfg(unix)]
#[test]
fn security_refusals_and_escaped_text() {
    use std::os::unix::fs::PermissionsExt as _;
    let ws = Workspace::new();
    ingest(
        &ws,
        "nightly",
        "rows.csv",
        "ticket_id,sub_status,\u{1b}[2Jnote\n100000000001,CL,x\n",
        0,
    );
    let mut text = transcript(&mut ws.kapsync(), &["status"]);
    ws.file(
        "escaped.csv",
        "ticket_id,sub_status,\u{1b}]0;x\u{7}\n1,CL,x\n",
    );
    text.push_str(&transcript(
        &mut ws.kapsync(),
        &["ingest", "--run", "r", "escaped.csv"],
    ));
    ws.file("out.csv", "old");
    text.push_str(&transcript(&mut ws.kapsync(), &["export", "-o", "out.csv"]));
    std::fs::set_permissions(ws.db(), std::fs::Permissions::from_mode(0o644)).unwrap();
    text.push_str(&transcript(&mut ws.kapsync(), &["status"]));
    let mut simulate = assert_cmd::Command::cargo_bin("kapsync").unwrap();
    simulate.env_remove("KAPTURE_TOKEN");
    text.push_str(&transcript(
        &mut simulate,
        &["simulate", "--port", "0", "--token", "x"],
    ));
    check("security_refusals", &ws, &text);
}

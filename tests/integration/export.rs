//! `kapsync export` and `kapsync retry` through the binary: shapes, defused formulas, the
//! output file, usage errors, and failed rows put back with their history kept.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use kapsync::store::Store;
use serde_json::{Value, json};

use kapsync::simulator::SimConfig;

use crate::support::{Workspace, start_sim, stderr, stdout};

/// A CSV input: two valid rows, one without a ticket id, one with a readable id but no
/// status, and a valid row whose comment needs quoting.
const INPUT: &str = "ticket_id,sub_status,comment,callback_time\n\
    000123456789,CL,plain,2026-01-02 03:04:05\n\
    100000000002,P,second,\n\
    ,CL,no id,\n\
    100000000004,,no status,\n\
    000100000005,RS,\"a, \"\"quoted\"\" word\nand a second line\",\n";

/// Ingests `content` as `name` (relative, so exports name it so) into run `run` and checks
/// the exit code.
fn ingest(ws: &Workspace, run: &str, name: &str, content: &str, code: i32) {
    ws.file(name, content);
    let out = ws
        .kapsync()
        .args(["ingest", "--run", run, name])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
}

/// Parses CSV text into its header and records.
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// The cell of `column` in `row`.
fn cell<'a>(header: &[String], row: &'a [String], column: &str) -> &'a str {
    let i = header
        .iter()
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("no column {column} in {header:?}"));
    &row[i]
}

/// Fails the jobs at `indexes` (in id order) of the latest run as the engine would.
async fn fail(ws: &Workspace, failures: &[(usize, &str, &str, Option<i64>)]) -> Vec<i64> {
    let ids: Vec<i64> = ws.jobs(None).await.iter().map(|j| j.id).collect();
    let store = Store::open(&ws.db()).await.unwrap();
    for (index, class, message, status) in failures {
        store
            .mark_failed_for_tests(ids[*index], class, message, *status)
            .await
            .unwrap();
    }
    store.close().await;
    ids
}

#[tokio::test]
async fn csv_export_of_every_row_and_of_invalid_rows() {
    let ws = Workspace::new();
    ingest(&ws, "r", "in.csv", INPUT, 1);
    fail(&ws, &[(1, "rejected", "Invalid Format", Some(200))]).await;

    let out = ws
        .kapsync()
        .args(["export", "--run", "r"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (header, rows) = parse_csv(&stdout(&out));
    assert_eq!(
        header,
        [
            "source_file",
            "source_line",
            "state",
            "attempts",
            "error_class",
            "error_message",
            "http_status",
            "ticket_id",
            "sub_status",
            "comment",
            "callback_time",
            "queue",
            "disposition",
            "confirmed",
            "raw_record"
        ]
    );
    assert_eq!(rows.len(), 5, "every row, invalid ones included");
    let lines: Vec<&str> = rows
        .iter()
        .map(|r| cell(&header, r, "source_line"))
        .collect();
    assert_eq!(lines, ["2", "3", "4", "5", "6"], "in id order");
    let first = &rows[0];
    assert_eq!(cell(&header, first, "source_file"), "in.csv");
    assert_eq!(cell(&header, first, "ticket_id"), "000123456789");
    assert_eq!(cell(&header, first, "callback_time"), "2026-01-02 03:04:05");
    let failed = &rows[1];
    assert_eq!(cell(&header, failed, "state"), "failed");
    assert_eq!(cell(&header, failed, "attempts"), "1");
    assert_eq!(cell(&header, failed, "error_class"), "rejected");
    assert_eq!(cell(&header, failed, "error_message"), "Invalid Format");
    assert_eq!(cell(&header, failed, "http_status"), "200");
    assert_eq!(
        cell(&header, &rows[4], "comment"),
        "a, \"quoted\" word\nand a second line"
    );

    let out = ws
        .kapsync()
        .args(["export", "--state", "invalid"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (header, rows) = parse_csv(&stdout(&out));
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| cell(&header, r, "state") == "invalid"));
    assert!(
        cell(&header, &rows[0], "error_message").contains("ticket_id"),
        "{rows:?}"
    );
    assert_eq!(cell(&header, &rows[0], "ticket_id"), "");
    assert_eq!(
        cell(&header, &rows[1], "ticket_id"),
        "100000000004",
        "a readable ticket id is kept"
    );
    assert_eq!(cell(&header, &rows[1], "sub_status"), "");
    assert_eq!(
        cell(&header, &rows[1], "comment"),
        "",
        "no payload, no fields"
    );
}

#[tokio::test]
async fn extra_keys_become_sorted_columns_and_jsonl_keeps_the_update() {
    let ws = Workspace::new();
    let input = concat!(
        r#"{"ticket_id":"000000000001","sub_status":"CL","zeta":"z","alpha":7}"#,
        "\n",
        r#"{"ticket_id":"000000000002","sub_status":"P","tags":["a","b"],"alpha":"text"}"#,
        "\n",
        r#"{"ticket_id":"000000000003"}"#,
        "\n",
    );
    ingest(&ws, "j", "in.jsonl", input, 1);

    let out = ws.kapsync().arg("export").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (header, rows) = parse_csv(&stdout(&out));
    assert_eq!(
        header[13..],
        [
            "extra.alpha",
            "extra.tags",
            "extra.zeta",
            "confirmed",
            "raw_record"
        ]
    );
    assert_eq!(
        rows[0][13..],
        ["7", "", "z", "", ""],
        "non-strings as compact JSON"
    );
    assert_eq!(rows[1][13..], ["text", r#"["a","b"]"#, "", "", ""]);
    assert_eq!(
        rows[2][13..],
        ["", "", "", "", r#"{"ticket_id":"000000000003"}"#],
        "an invalid row carries its source record"
    );

    let out = ws
        .kapsync()
        .args(["export", "--format", "jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[1],
        json!({
            "source_file": "in.jsonl", "source_line": 2, "state": "pending", "attempts": 0,
            "error_class": null, "error_message": null, "http_status": null,
            "ticket_id": "000000000002",
            "update": {"ticket_id": "000000000002", "sub_status": "P",
                       "tags": ["a", "b"], "alpha": "text"},
            "confirmed": null,
            "raw_record": null,
        })
    );
    assert_eq!(lines[2]["state"], "invalid");
    assert_eq!(lines[2]["update"], Value::Null);
    assert_eq!(lines[2]["ticket_id"], "000000000003");
}

#[tokio::test]
async fn formula_cells_are_defused() {
    let ws = Workspace::new();
    let input = "ticket_id,sub_status,comment,queue,disposition\n\
        100000000001,CL,\"=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\",+1,-2\n\
        100000000002,CL,@x,\tcmd,safe-text\n";
    ingest(&ws, "f", "in.csv", input, 0);
    let out = ws.kapsync().arg("export").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (header, rows) = parse_csv(&stdout(&out));
    assert_eq!(
        cell(&header, &rows[0], "comment"),
        "'=HYPERLINK(\"http://evil.example\",\"click\")"
    );
    assert_eq!(cell(&header, &rows[0], "queue"), "'+1");
    assert_eq!(cell(&header, &rows[0], "disposition"), "'-2");
    assert_eq!(cell(&header, &rows[1], "comment"), "'@x");
    assert_eq!(cell(&header, &rows[1], "queue"), "'\tcmd");
    assert_eq!(cell(&header, &rows[1], "disposition"), "safe-text");

    // JSONL is data for programs, not spreadsheets: values stay exact.
    let out = ws
        .kapsync()
        .args(["export", "--format", "jsonl"])
        .output()
        .unwrap();
    let first: Value = serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(first["update"]["queue"], "+1");
}

#[tokio::test]
async fn defused_cells_ingest_again_as_they_were() {
    let ws = Workspace::new();
    // A value that is already quoted before a trigger must survive too.
    let input = "ticket_id,sub_status,comment,queue,disposition\n\
        100000000001,CL,=1+1,-2 days,'=quoted\n\
        100000000002,CL,'plain,@x,safe\n";
    ingest(&ws, "first", "in.csv", input, 0);
    let out = ws
        .kapsync()
        .args(["export", "-o", "all.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let exported = std::fs::read_to_string(ws.dir.path().join("all.csv")).unwrap();
    assert!(
        exported.contains("'-2 days") && exported.contains("''=quoted"),
        "{exported}"
    );

    let out = ws
        .kapsync()
        .args(["ingest", "--run", "again", "--resend-unchanged", "all.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let before = ws.jobs(Some("first")).await;
    let after = ws.jobs(Some("again")).await;
    assert_eq!(after.len(), 2);
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(
            new.payload, old.payload,
            "the update is byte for byte the same"
        );
    }

    // The same cells in a file that is not an export keep their quotes.
    let input = "ticket_id,sub_status,comment\n100000000003,CL,'-2 days\n";
    ingest(&ws, "plain", "plain.csv", input, 0);
    let plain = ws.jobs(Some("plain")).await;
    let payload: Value = serde_json::from_str(plain[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(payload["comment"], "'-2 days");
}

#[tokio::test]
async fn export_to_a_file_is_owner_only_and_reported_on_stderr() {
    let ws = Workspace::new();
    ingest(&ws, "o", "in.csv", INPUT, 1);
    let out = ws
        .kapsync()
        .args(["export", "--format", "jsonl", "-o", "rows.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "nothing on stdout");
    let message = stderr(&out);
    assert!(
        message.contains("exported 5 rows of run o to rows.jsonl"),
        "{message}"
    );
    let path = ws.dir.path().join("rows.jsonl");
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 5);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
}

#[tokio::test]
async fn a_closed_stdout_pipe_is_not_an_error() {
    let ws = Workspace::new();
    let mut input = String::new();
    for i in 0..20_000 {
        input.push_str(&format!(
            "{{\"ticket_id\":\"{i:012}\",\"sub_status\":\"CL\",\"comment\":\"{}\"}}\n",
            "x".repeat(100)
        ));
    }
    ingest(&ws, "big", "big.jsonl", &input, 0);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kapsync"))
        .arg("--db")
        .arg(ws.db())
        .args(["export", "--format", "jsonl"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("000000000000"), "{first}");
    // The reader is dropped here, closing the pipe long before 2 MB were written.
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[tokio::test]
async fn bad_state_class_run_and_output_path_are_usage_errors() {
    let ws = Workspace::new();
    ingest(&ws, "u", "in.csv", INPUT, 1);
    let out = ws
        .kapsync()
        .args(["export", "--state", "done"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pending, in_flight, succeeded, failed, invalid, skipped"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");

    let out = ws
        .kapsync()
        .args(["export", "-o", "no/such/dir/rows.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("export file no/such/dir/rows.csv"),
        "{}",
        stderr(&out)
    );

    let out = ws
        .kapsync()
        .args(["retry", "--class", "timeout"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("use one of: rejected, transient, transient_in_doubt\n"),
        "{}",
        stderr(&out)
    );

    let out = ws
        .kapsync()
        .args(["retry", "--run", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `--grep` keeps the rows whose message (an invalid row's reason) holds the text literally,
/// across states or within `--state`; an empty text is a usage error.
#[tokio::test]
async fn grep_exports_only_rows_whose_message_holds_the_text() {
    let ws = Workspace::new();
    ingest(&ws, "g", "in.csv", INPUT, 1);
    fail(
        &ws,
        &[
            (0, "rejected", "Invalid status 100%", Some(200)),
            (1, "rejected", "Invalid status 1000", Some(200)),
        ],
    )
    .await;
    let lines = |args: &[&str]| -> Vec<String> {
        let out = ws.kapsync().arg("export").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let (header, rows) = parse_csv(&stdout(&out));
        rows.iter()
            .map(|r| cell(&header, r, "source_line").to_owned())
            .collect()
    };
    assert_eq!(lines(&["--grep", "100%"]), ["2"], "% is no wildcard");
    assert_eq!(lines(&["--grep", "Invalid status"]), ["2", "3"]);
    assert_eq!(
        lines(&["--state", "invalid", "--grep", "empty"]),
        ["4", "5"]
    );
    assert_eq!(lines(&["--state", "failed", "--grep", "empty"]).len(), 0);
    let out = ws
        .kapsync()
        .args(["export", "--grep", ""])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--grep needs some text"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn retry_puts_back_only_matching_rows_and_keeps_their_history() {
    let ws = Workspace::new();
    ingest(&ws, "night", "in.csv", INPUT, 1);
    // Rows 0, 1 and 4 are valid; 2 and 3 invalid.
    let ids = fail(
        &ws,
        &[
            (0, "rejected", "Invalid Format: sub_status", Some(200)),
            (1, "rejected", "ticket not found", Some(404)),
            (4, "transient", "Invalid Format from a proxy", Some(502)),
        ],
    )
    .await;

    let out = ws
        .kapsync()
        .args([
            "retry",
            "--class",
            "rejected",
            "--grep",
            "Invalid Format",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report,
        json!({"run": "night", "requeued": 1, "superseded": 0})
    );

    let jobs = ws.jobs(None).await;
    let states: Vec<&str> = jobs.iter().map(|j| j.state.as_str()).collect();
    assert_eq!(
        states,
        ["pending", "failed", "invalid", "invalid", "failed"],
        "only the rejected row whose message matches"
    );
    assert_eq!(jobs[0].attempts, 0);
    assert_eq!(jobs[0].error_class, None);
    assert_eq!(jobs[0].error_message, None);
    assert_eq!(jobs[0].http_status, None);
    assert_eq!(jobs[1].error_message.as_deref(), Some("ticket not found"));

    let store = Store::open(&ws.db()).await.unwrap();
    assert_eq!(
        store.attempt_count(ids[0]).await.unwrap(),
        1,
        "history kept"
    );
    store.close().await;

    let out = ws.kapsync().args(["retry"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "Put 2 failed rows of run night back to pending; \
             `kapsync --db {} run --run night` sends them.\n",
            ws.db().display()
        )
    );
    let states: Vec<String> = ws.jobs(None).await.into_iter().map(|j| j.state).collect();
    assert_eq!(
        states,
        ["pending", "pending", "invalid", "invalid", "pending"],
        "invalid rows are not failed rows"
    );

    let out = ws
        .kapsync()
        .args(["retry", "--grep", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).starts_with("No failed rows"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn an_exported_csv_of_failures_ingests_again_without_a_mapping() {
    let ws = Workspace::new();
    ingest(&ws, "first", "in.csv", INPUT, 1);
    fail(
        &ws,
        &[
            (0, "rejected", "Invalid Format", Some(200)),
            (4, "rejected", "Invalid Format", Some(200)),
        ],
    )
    .await;
    let out = ws
        .kapsync()
        .args(["export", "--state", "failed", "-o", "failed.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = ws
        .kapsync()
        .args(["ingest", "--run", "fixed", "failed.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let before = ws.jobs(Some("first")).await;
    let after = ws.jobs(Some("fixed")).await;
    assert_eq!(after.len(), 2);
    for (old, new) in [(&before[0], &after[0]), (&before[4], &after[1])] {
        let old: Value = serde_json::from_str(old.payload.as_deref().unwrap()).unwrap();
        let new: Value = serde_json::from_str(new.payload.as_deref().unwrap()).unwrap();
        for field in ["ticket_id", "sub_status", "comment", "callback_time"] {
            assert_eq!(new[field], old[field], "{field}");
        }
    }
    assert_eq!(after[0].ticket_id.as_deref(), Some("000123456789"));
    assert_eq!(after[1].ticket_id.as_deref(), Some("000100000005"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_keeps_a_few_bytes_and_export_shows_what_kapture_confirmed() {
    let sim = start_sim(SimConfig {
        full_tickets: true,
        ..SimConfig::default()
    })
    .await;
    let ws = Workspace::new();
    let file = ws.file(
        "in.csv",
        "ticket_id,sub_status,comment,queue\n600000000001,CL,done,Billing\n600000000002,P,later,\n",
    );
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "export-test-token")
        .args(["sync", file.to_str().unwrap(), "--run", "r", "--rate", "0"])
        .args(["--base-url", &sim.base_url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Kapture's answer holds a 2 KB ticket; a row keeps only the status it reports.
    let stored: Vec<String> = ws
        .jobs(Some("r"))
        .await
        .into_iter()
        .filter_map(|j| j.response)
        .collect();
    assert_eq!(
        stored,
        [
            r#"{"status":"Complete"}"#,
            r#"{"queue":"Customer Support","status":"Pending"}"#
        ]
    );

    let out = ws
        .kapsync()
        .args(["export", "--run", "r", "--format", "jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0]["confirmed"],
        json!({"ticket_id": "600000000001", "status": "Complete", "sub_status": "CL",
               "queue": "Billing", "message": "Ticket updated successfully"})
    );
    assert_eq!(
        lines[1]["confirmed"],
        json!({"ticket_id": "600000000002", "status": "Pending", "sub_status": "P",
               "queue": "Customer Support", "message": "Ticket updated successfully"}),
        "a queue the update did not set is Kapture's"
    );

    // The CSV column reads the same, and ingesting the export again does not send it.
    let out = ws
        .kapsync()
        .args(["export", "--run", "r"])
        .output()
        .unwrap();
    let (header, rows) = parse_csv(&stdout(&out));
    let confirmed: Value = serde_json::from_str(cell(&header, &rows[0], "confirmed")).unwrap();
    assert_eq!(confirmed, lines[0]["confirmed"]);
    let again = ws.file("again.csv", stdout(&out));
    let out = ws
        .kapsync()
        .args([
            "ingest",
            again.to_str().unwrap(),
            "--run",
            "again",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Not an ignored column either: the summary (which lists those) never names it.
    assert!(stdout(&out).contains("ignored_columns"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("confirmed"), "{}", stdout(&out));
    sim.shutdown().await;
}

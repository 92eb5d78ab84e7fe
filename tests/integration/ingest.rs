//! `kapsync ingest`, `status` and `runs` through the binary, for every input kind and bad row.

use serde_json::Value;

use crate::support::{Workspace, stderr, stdout};

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {}", stdout(output));
    })
}

/// The invalid reasons of a run by line.
/// Checks the invalid rows of the latest run: exactly these lines, each reason holding its text.
async fn assert_reasons(ws: &Workspace, expect: &[(i64, &str)]) {
    let got: Vec<(i64, String)> = ws
        .jobs(None)
        .await
        .into_iter()
        .filter(|j| j.state == "invalid")
        .map(|j| (j.line, j.error_message.unwrap_or_default()))
        .collect();
    assert_eq!(got.len(), expect.len(), "{got:?}");
    for ((line, reason), (want_line, want)) in got.iter().zip(expect) {
        assert_eq!(line, want_line, "{got:?}");
        assert!(
            reason.contains(want),
            "line {line}: {reason:?} lacks {want:?}"
        );
    }
}

#[tokio::test]
async fn zendesk_sample_with_its_mapping() {
    let ws = Workspace::new();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "zd", "--json", "--mapping"])
        .arg(format!("{root}/sample_data/zendesk_mapping.toml"))
        .arg(format!("{root}/sample_data/zendesk_export.csv"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "two rows are invalid: {}",
        stderr(&out)
    );
    let report = json_of(&out);
    assert_eq!(report["run"], "zd");
    assert_eq!(report["valid"], 40);
    assert_eq!(report["invalid"], 2);
    let files = &report["files"][0];
    assert_eq!(
        files["ignored_columns"],
        serde_json::json!(["Subject", "Requester", "Updated at"])
    );
    let jobs = ws.jobs(Some("zd")).await;
    let first: Value = serde_json::from_str(jobs[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(first["ticket_id"], "500000100000");
    assert_eq!(first["sub_status"], "P", "Zendesk 'pending' maps to P");
    assert_eq!(first["queue"], "Zendesk migration");
    assert_eq!(first["legacy_group"], "Logistics");
    assert_eq!(
        first["callback_time"], "2026-12-13 18:00:00",
        "ISO form rewritten"
    );
    // The quoted newline in row 12 does not shift the ticket ids of later rows.
    let quoted = jobs
        .iter()
        .find(|j| j.ticket_id.as_deref() == Some("500000100077"))
        .unwrap();
    assert!(
        quoted
            .payload
            .as_deref()
            .unwrap()
            .contains("it still fails\\\",\\nsee")
    );
}

#[tokio::test]
async fn freshdesk_and_jsonl_samples() {
    let ws = Workspace::new();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "fd", "--mapping"])
        .arg(format!("{root}/sample_data/freshdesk_mapping.toml"))
        .arg(format!("{root}/sample_data/freshdesk_export.csv"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("30 rows read, 30 valid, 0 invalid"),
        "{}",
        stdout(&out)
    );

    let out = ws
        .kapsync()
        .args(["ingest", "--run", "js", "--json"])
        .arg(format!("{root}/sample_data/updates.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = json_of(&out);
    assert_eq!(
        (report["valid"].as_i64(), report["invalid"].as_i64()),
        (Some(20), Some(1))
    );
    let jobs = ws.jobs(Some("js")).await;
    let second: Value = serde_json::from_str(jobs[1].payload.as_deref().unwrap()).unwrap();
    assert_eq!(
        second["ticket_id"], "900000300003",
        "a JSON number becomes its digits"
    );
    assert!(jobs.iter().any(|j| {
        j.payload
            .as_deref()
            .is_some_and(|p| p.contains("legacy_source"))
    }));
    assert_eq!(
        jobs.last().unwrap().line,
        22,
        "the blank line is counted, not stored"
    );
}

#[tokio::test]
async fn every_bad_csv_row_is_stored_invalid_with_line_and_reason() {
    let ws = Workspace::new();
    let mut input = Vec::new();
    input.extend_from_slice(b"\xEF\xBB\xBFTicket ID,Status,Comment,Callback Time\r\n");
    input.extend_from_slice(b"000123456789,CL,ok,\r\n"); // 2: valid, leading zeros kept
    input.extend_from_slice(b",CL,no id,\r\n"); // 3
    input.extend_from_slice(b"100000000004,,no status,\r\n"); // 4
    input.extend_from_slice(b"100000000005,P,bad time,tomorrow\r\n"); // 5
    input.extend_from_slice(b"100000000006,P,iso time,2026-01-02T03:04:05\r\n"); // 6: valid
    input.extend_from_slice(b"100000000007,P,too,many,fields\r\n"); // 7
    input.extend_from_slice(b"100000000008,P\r\n"); // 8
    input.extend_from_slice(b"100000000009,P,bad \xFF utf8,\r\n"); // 9
    input.extend_from_slice(b"100000000010,P,broken \"quote,\r\n"); // 10
    input.extend_from_slice(b"100000000011,P,\"multi\nline\",\r\n"); // 11-12: valid
    input.extend_from_slice(b"100000000013,P,");
    input.extend_from_slice("x".repeat(3000).as_bytes()); // 13: over the limit
    input.extend_from_slice(b",\r\n");
    input.extend_from_slice(b"100000000014,P,last,\r\n"); // 14: valid
    let path = ws.file("bad.csv", &input);
    let out = ws
        .kapsync()
        .args(["ingest", "--max-record-bytes", "2048", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json_of(&out);
    assert_eq!(report["rows_read"], 12);
    assert_eq!(report["valid"], 4);
    assert_eq!(report["invalid"], 8);
    let expect: [(i64, &str); 8] = [
        (3, "ticket_id is empty"),
        (4, "sub_status is empty"),
        (5, "callback_time \"tomorrow\""),
        (7, "has 5 fields, but the header has 4"),
        (8, "has 2 fields, but the header has 4"),
        (9, "column \"Comment\" (field 3) is not valid UTF-8"),
        (10, "broken quoting on line 10"),
        (13, "over the limit of 2048"),
    ];
    assert_reasons(&ws, &expect).await;
    let jobs = ws.jobs(None).await;
    assert_eq!(jobs[0].ticket_id.as_deref(), Some("000123456789"));
    let iso = jobs.iter().find(|j| j.line == 6).unwrap();
    assert!(
        iso.payload
            .as_deref()
            .unwrap()
            .contains("2026-01-02 03:04:05")
    );
    assert_eq!(jobs.last().unwrap().line, 14);
    assert_eq!(jobs.last().unwrap().state, "pending");
}

#[tokio::test]
async fn every_bad_jsonl_line_is_stored_invalid_with_line_and_reason() {
    let ws = Workspace::new();
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"ticket_id\":\"1\",\"sub_status\":\"CL\"}\n"); // 1 valid
    input.extend_from_slice(b"[1,2]\n"); // 2
    input.extend_from_slice(b"{\"ticket_id\":\"3\",\n"); // 3
    input.extend_from_slice(b"   \n"); // 4 blank
    input.extend_from_slice(b"{\"ticket_id\":\"5\",\"sub_status\":\"\xFF\"}\n"); // 5
    input.extend_from_slice(b"{\"sub_status\":\"CL\"}\n"); // 6
    input.extend_from_slice(b"{\"ticket_id\":7.5,\"sub_status\":\"CL\"}\n"); // 7
    input.extend_from_slice(
        format!(
            "{{\"ticket_id\":\"8\",\"sub_status\":\"CL\",\"c\":\"{}\"}}\n",
            "y".repeat(5000)
        )
        .as_bytes(),
    ); // 8
    input.extend_from_slice(
        b"{\"ticket_id\":\"9\",\"sub_status\":\"P\",\"callback_time\":\"2026-02-30 10:00:00\"}\r\n",
    ); // 9
    input.extend_from_slice(
        b"{\"ticket_id\":10,\"sub_status\":\"P\",\"callback_time\":\"2026-02-03T10:00:00\"}",
    ); // 10 valid, no final newline
    let path = ws.file("bad.ndjson", &input);
    let out = ws
        .kapsync()
        .args(["ingest", "--max-record-bytes", "1000"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expect: [(i64, &str); 7] = [
        (2, "JSON array, not an object"),
        (3, "not valid JSON"),
        (5, "not valid UTF-8"),
        (6, "ticket_id is missing"),
        (7, "whole number"),
        (8, "over the limit of 1000"),
        (9, "day 30 does not exist"),
    ];
    assert_reasons(&ws, &expect).await;
    let summary = stdout(&out);
    assert!(
        summary.contains("line 2: line is a JSON array"),
        "{summary}"
    );
    let jobs = ws.jobs(None).await;
    let last = jobs.last().unwrap();
    assert_eq!((last.line, last.state.as_str()), (10, "pending"));
    assert!(
        last.payload
            .as_deref()
            .unwrap()
            .contains("\"ticket_id\":\"10\"")
    );
}

#[tokio::test]
async fn same_content_twice_adds_nothing_and_says_so() {
    let ws = Workspace::new();
    let path = ws.file("a.csv", "ticket_id,sub_status\n1,CL\n2,P\n");
    let copy = ws.file("copy.csv", "ticket_id,sub_status\n1,CL\n2,P\n");
    ws.kapsync()
        .args(["ingest", "--run", "r"])
        .arg(&path)
        .assert()
        .code(0);
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "r"])
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("already ingested"),
        "{}",
        stdout(&out)
    );
    assert_eq!(ws.jobs(Some("r")).await.len(), 2);
    // Standard input with the same content is recognised at its end.
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "r", "--format", "csv", "-"])
        .write_stdin("ticket_id,sub_status\n1,CL\n2,P\n")
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("already ingested"),
        "{}",
        stdout(&out)
    );
    assert_eq!(ws.jobs(Some("r")).await.len(), 2);
    // Another run takes the same file again.
    ws.kapsync()
        .args(["ingest", "--run", "other"])
        .arg(&path)
        .assert()
        .code(0);
    assert_eq!(ws.jobs(Some("other")).await.len(), 2);
}

#[tokio::test]
async fn stdin_needs_a_format_and_runs_get_time_names() {
    let ws = Workspace::new();
    let out = ws
        .kapsync()
        .args(["ingest", "-"])
        .write_stdin("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--format"), "{}", stderr(&out));
    let out = ws
        .kapsync()
        .args(["ingest", "--format", "jsonl", "-"])
        .write_stdin("{\"ticket_id\":\"5\",\"sub_status\":\"CL\"}\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Ingested into new run 20"), "{text}");
    assert!(text.contains("<stdin>: 1 rows read"), "{text}");
}

#[tokio::test]
async fn unusable_inputs_are_usage_errors_that_name_the_file() {
    let ws = Workspace::new();
    let out = ws
        .kapsync()
        .args(["ingest", "missing.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.csv"), "{}", stderr(&out));
    assert!(
        !ws.db().exists()
            || ws
                .kapsync()
                .arg("runs")
                .output()
                .unwrap()
                .stdout
                .starts_with(b"No runs")
    );

    let path = ws.file("notes.txt", "hello");
    let out = ws.kapsync().arg("ingest").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot tell the format"),
        "{}",
        stderr(&out)
    );

    let csv = ws.file("a.csv", "Id,Status\n1,CL\n");
    let mapping = ws.file("m.toml", "[columns]\ncomment = \"Latest Comment\"\n");
    let out = ws
        .kapsync()
        .arg("ingest")
        .arg(&csv)
        .arg("--mapping")
        .arg(&mapping)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("a.csv") && err.contains("Latest Comment"),
        "{err}"
    );

    let bad_mapping = ws.file("bad.toml", "[columns]\nticket = \"Id\"\n");
    let out = ws
        .kapsync()
        .arg("ingest")
        .arg(&csv)
        .arg("--mapping")
        .arg(&bad_mapping)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.toml"), "{}", stderr(&out));

    // UTF-16 is decoded; UTF-32 (outside the WHATWG set) is refused.
    let utf32 = ws.file("u32.csv", b"\xFF\xFE\x00\x00t\x00\x00\x00\n\x00\x00\x00");
    let out = ws.kapsync().arg("ingest").arg(&utf32).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("UTF-32"), "{}", stderr(&out));
    assert!(stderr(&out).contains("UTF-8"), "{}", stderr(&out));
}

#[tokio::test]
async fn empty_and_header_only_files_ingest_nothing() {
    let ws = Workspace::new();
    let empty = ws.file("empty.csv", "");
    let header = ws.file("header.csv", "ticket_id,sub_status\r\n");
    let blank = ws.file("blank.jsonl", "\n\n");
    let out = ws
        .kapsync()
        .arg("ingest")
        .args([&empty, &header, &blank])
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_of(&out)["rows_read"], 0);
}

#[tokio::test]
async fn status_and_runs_report_every_state() {
    let ws = Workspace::new();
    let path = ws.file("a.csv", "ticket_id,sub_status\n1,CL\n2,\n");
    ws.kapsync()
        .args(["ingest", "--run", "nightly"])
        .arg(&path)
        .assert()
        .code(1);
    let out = ws.kapsync().args(["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let status = json_of(&out);
    assert_eq!(status["name"], "nightly");
    assert!(status["created_at"].as_str().unwrap().starts_with("20"));
    assert_eq!(
        status["counts"],
        serde_json::json!({"pending": 1, "in_flight": 0, "succeeded": 0, "failed": 0, "invalid": 1, "skipped": 0})
    );
    assert_eq!(status["sources"][0]["path"], path.display().to_string());
    let text = stdout(&ws.kapsync().arg("status").output().unwrap());
    assert!(
        text.contains("Run nightly") && text.contains("invalid"),
        "{text}"
    );

    let out = ws.kapsync().args(["runs", "--json"]).output().unwrap();
    let runs = json_of(&out);
    assert_eq!(runs["runs"][0]["name"], "nightly");
    assert_eq!(runs["runs"][0]["counts"]["pending"], 1);

    let out = ws
        .kapsync()
        .args(["status", "--run", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no run named \"nope\""),
        "{}",
        stderr(&out)
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new();
    let path = ws.file("a.csv", "ticket_id,sub_status\n1,CL\n");
    ws.kapsync().arg("ingest").arg(&path).assert().code(0);
    let mode = std::fs::metadata(ws.db()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn settings_file_and_environment_layer_under_flags() {
    let ws = Workspace::new();
    let path = ws.file("a.csv", "ticket_id,sub_status\n1,CL\n");
    ws.file("kapsync.toml", "db = \"from-file.db\"\n");
    let mut cmd = assert_cmd::Command::cargo_bin("kapsync").unwrap();
    cmd.current_dir(ws.dir.path())
        .args(["--no-progress", "ingest"])
        .arg(&path)
        .assert()
        .code(0);
    assert!(
        ws.dir.path().join("from-file.db").exists(),
        "kapsync.toml names the database"
    );
    let mut cmd = assert_cmd::Command::cargo_bin("kapsync").unwrap();
    cmd.current_dir(ws.dir.path())
        .env("KAPSYNC_DB", "from-env.db")
        .args(["--no-progress", "ingest"])
        .arg(&path)
        .assert()
        .code(0);
    assert!(
        ws.dir.path().join("from-env.db").exists(),
        "the environment beats the file"
    );
    ws.file("broken.toml", "rate = \"fast\"\n");
    let mut cmd = assert_cmd::Command::cargo_bin("kapsync").unwrap();
    let out = cmd
        .current_dir(ws.dir.path())
        .args(["--config", "broken.toml", "runs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("broken.toml"), "{}", stderr(&out));
}

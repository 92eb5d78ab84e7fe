//! Real exports as they come (issue 12) through the binary: allowed values, optional
//! columns, the value distribution in `--json`, JSONL numbers and the JSONL export round trip.

use serde_json::Value;

use crate::support::{Workspace, stderr, stdout};

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

#[tokio::test]
async fn values_outside_the_allowed_list_are_invalid_with_the_list() {
    let ws = Workspace::new();
    let csv = ws.file("a.csv", "ticket_id,sub_status\n1,OP\n2,hold\n3,P\n4,hodl\n");
    let mapping = ws.file(
        "m.toml",
        "[values.sub_status]\nhold = \"PE\"\n[allowed]\nsub_status = [\"OP\", \"P\", \"PE\"]\n",
    );
    let out = ws
        .kapsync()
        .args(["ingest", "--json", "--mapping"])
        .arg(&mapping)
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let jobs = ws.jobs(None).await;
    let states: Vec<&str> = jobs.iter().map(|j| j.state.as_str()).collect();
    assert_eq!(states, ["pending", "pending", "pending", "invalid"]);
    let reason = jobs[3].error_message.as_deref().unwrap();
    assert!(
        reason.contains("sub_status \"hodl\"")
            && reason.contains("[allowed] sub_status lists OP, P, PE"),
        "{reason}"
    );
    // The distribution says what each value became and which one was refused.
    let values = &json_of(&out)["files"][0]["values"][0];
    assert_eq!(values["field"], "sub_status");
    let hodl = values["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["value"] == "hodl")
        .unwrap();
    assert_eq!(hodl["note"], "not allowed");
    assert_eq!(hodl["sent"], Value::Null);

    // --sub-statuses on the command line, without a mapping.
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "flag", "--sub-statuses", "OP,P"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let jobs = ws.jobs(Some("flag")).await;
    let invalid: Vec<i64> = jobs
        .iter()
        .filter(|j| j.state == "invalid")
        .map(|j| j.line)
        .collect();
    assert_eq!(invalid, [3, 5]);
    assert!(
        jobs[1]
            .error_message
            .as_deref()
            .unwrap()
            .contains("--sub-statuses lists OP, P"),
        "{:?}",
        jobs[1].error_message
    );
}

#[tokio::test]
async fn an_optional_column_may_be_missing() {
    let ws = Workspace::new();
    let mapping = ws.file(
        "m.toml",
        "[columns]\nticket_id = \"Id\"\nsub_status = \"Status\"\n\
         callback_time = { column = \"Follow-up at\", optional = true }\n",
    );
    let without = ws.file("night.csv", "Id,Status\n1,CL\n");
    let with = ws.file(
        "day.csv",
        "Id,Status,Follow-up at\n2,P,2026-12-31 10:00:00\n",
    );
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "r", "--mapping"])
        .arg(&mapping)
        .args([&without, &with])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let jobs = ws.jobs(Some("r")).await;
    assert_eq!(
        jobs[0].payload.as_deref(),
        Some(r#"{"sub_status":"CL","ticket_id":"1"}"#)
    );
    assert_eq!(
        jobs[1].payload.as_deref(),
        Some(r#"{"callback_time":"2026-12-31 10:00:00","sub_status":"P","ticket_id":"2"}"#)
    );
    // Not optional: the same file is refused as a whole.
    let strict = ws.file(
        "strict.toml",
        "[columns]\ncallback_time = \"Follow-up at\"\n",
    );
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "s", "--mapping"])
        .arg(&strict)
        .arg(&without)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Numbers beyond 64 bits, `-0`, exponents and long fractions, as a JSONL source writes them.
const NUMBERS: &str = r#"{"ticket_id":123456789012345678901234567890,"sub_status":"CL","big":-2.3746237467327687346873264e+47,"zero":-0,"exp":1E400,"frac":0.10000000000000000000001,"list":[1.0,18446744073709551616]}"#;

#[tokio::test]
async fn jsonl_numbers_pass_through_byte_exact_and_exports_ingest_back() {
    let ws = Workspace::new();
    let source = ws.file("n.jsonl", format!("{NUMBERS}\n"));
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "first"])
        .arg(&source)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let payload = ws.jobs(Some("first")).await[0].payload.clone().unwrap();
    // Every digit is kept; only an exponent's spelling is normalized (serde_json's
    // arbitrary_precision writes `1E400` as `1e+400`, the same number).
    assert_eq!(
        payload,
        r#"{"big":-2.3746237467327687346873264e+47,"exp":1e+400,"frac":0.10000000000000000000001,"list":[1.0,18446744073709551616],"sub_status":"CL","ticket_id":"123456789012345678901234567890","zero":-0}"#
    );
    // Export as JSONL, ingest the export into another run: the same payloads.
    let out = ws
        .kapsync()
        .args(["export", "--run", "first", "--format", "jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let export = stdout(&out);
    assert!(
        export.contains("-2.3746237467327687346873264e+47"),
        "{export}"
    );
    let exported = ws.file("export.jsonl", &export);
    // The same rows again would be stored as unchanged (no payload): resend them.
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "second", "--resend-unchanged"])
        .arg(&exported)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let again = ws.jobs(Some("second")).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].payload.as_deref(), Some(payload.as_str()));
}

#[tokio::test]
async fn a_jsonl_export_of_a_mixed_run_ingests_back_to_the_same_payloads() {
    let ws = Workspace::new();
    let csv = ws.file(
        "a.csv",
        "ticket_id,sub_status,comment,callback_time,extra.n\n\
         1,CL,\"=1+1, said \"\"he\"\"\",2026-12-31T10:00:00,7\n\
         2,,no status,,\n\
         3,P,  ,,x\n",
    );
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "first"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = ws
        .kapsync()
        .args(["export", "--run", "first", "--format", "jsonl"])
        .output()
        .unwrap();
    let exported = ws.file("export.jsonl", stdout(&out));
    // The same rows again would be stored as unchanged (no payload): resend them.
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "second", "--resend-unchanged"])
        .arg(&exported)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let first = ws.jobs(Some("first")).await;
    let second = ws.jobs(Some("second")).await;
    let payloads = |jobs: &[kapsync::store::JobRow]| -> Vec<Option<String>> {
        jobs.iter().map(|j| j.payload.clone()).collect()
    };
    assert_eq!(payloads(&first), payloads(&second));
    assert!(
        second[1]
            .error_message
            .as_deref()
            .unwrap()
            .contains("exported row without an update"),
        "{:?}",
        second[1].error_message
    );
}

#[tokio::test]
async fn exported_invalid_rows_carry_their_source_record() {
    let ws = Workspace::new();
    let csv = ws.file(
        "eu.csv",
        b"Id;Status;Note\n1;R\xe9solu;ok\n2;;\"no; status\"\n".as_slice(),
    );
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "r", "--encoding", "windows-1252"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = ws
        .kapsync()
        .args([
            "export", "--run", "r", "--state", "invalid", "--format", "jsonl",
        ])
        .output()
        .unwrap();
    let line: Value = serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(line["raw_record"], "2;;\"no; status\"");
    assert_eq!(line["update"], Value::Null);
    // A UTF-8 file's row with a Windows-1252 byte keeps what could be read of it.
    let bad = ws.file("bad.csv", b"ticket_id,sub_status\n7,R\xe9solu\n".as_slice());
    ws.kapsync()
        .args(["ingest", "--run", "bad"])
        .arg(&bad)
        .output()
        .unwrap();
    let jobs = ws.jobs(Some("bad")).await;
    assert_eq!(jobs[0].raw_record.as_deref(), Some("7,R\u{FFFD}solu"));
    // The CSV export has the column last, and ingesting the export reads past it.
    let out = ws
        .kapsync()
        .args(["export", "--run", "r"])
        .output()
        .unwrap();
    let export = stdout(&out);
    assert!(
        export.lines().next().unwrap().ends_with(",raw_record"),
        "{export}"
    );
    let again = ws.file("again.csv", &export);
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "again"])
        .arg(&again)
        .output()
        .unwrap();
    assert!(!stdout(&out).contains("raw_record"), "{}", stdout(&out));
}

#[tokio::test]
async fn a_run_is_not_fed_with_another_mapping_unless_asked() {
    let ws = Workspace::new();
    let mapping = ws.file("zendesk.toml", "[columns]\nticket_id = \"Id\"\n");
    let first = ws.file("a.csv", "Id,sub_status\n1,CL\n");
    let second = ws.file("b.csv", "Id,sub_status\n2,CL\n");
    let ingest = |extra: &[&str], file: &std::path::Path| {
        let mut cmd = ws.kapsync();
        cmd.args(["ingest", "--run", "night"]).args(extra).arg(file);
        cmd.output().unwrap()
    };
    let zendesk = mapping.to_str().unwrap();
    assert_eq!(
        ingest(&["--mapping", zendesk], &first).status.code(),
        Some(0)
    );
    let out = ingest(&[], &second);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("was ingested with mapping zendesk.toml")
            && err.contains("this ingest uses no mapping file")
            && err.contains("--mapping-changed"),
        "{err}"
    );
    assert_eq!(ws.jobs(Some("night")).await.len(), 1, "nothing added");
    // The same mapping again is fine; so is another one when asked for.
    assert_eq!(
        ingest(&["--mapping", zendesk], &second).status.code(),
        Some(0)
    );
    let third = ws.file("c.csv", "Id,sub_status\n3,CL\n");
    let out = ingest(&["--mapping-changed"], &third);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

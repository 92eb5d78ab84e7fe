//! The bad-input corpus (`tests/fixtures/bad/`, plus large inputs generated here) through the
//! binary: no input panics, every good row is stored `pending`, every bad row `invalid` with
//! its line and a reason naming the field or problem, and a 10 MB line keeps memory small.

use std::path::{Path, PathBuf};
use std::process::Output;

use kapsync::store::Store;

use crate::support::{Workspace, stderr};

/// What ingesting one corpus file must give.
struct Case {
    file: &'static str,
    /// Extra arguments (a small `--max-record-bytes` makes an over-long row cheap to commit).
    args: &'static [&'static str],
    /// Lines of the rows stored `pending`.
    good: &'static [i64],
    /// Line and a piece of the reason of every row stored `invalid`, in line order.
    bad: &'static [(i64, &'static str)],
    /// For a file refused as a whole (exit 2): a piece of the error message.
    refused: Option<&'static str>,
}

const SMALL_LIMIT: &[&str] = &["--max-record-bytes", "200"];

const CASES: &[Case] = &[
    Case {
        file: "bad_rows.csv",
        args: SMALL_LIMIT,
        good: &[2, 8, 16, 18],
        bad: &[
            (3, "ticket_id is empty"),
            (4, "ticket_id is empty"),
            (5, "sub_status is empty"),
            (
                6,
                "callback_time \"31/12/2026 10:00\" is not yyyy-MM-dd HH:mm:ss",
            ),
            (7, "day 30 does not exist in month 2"),
            (9, "column \"comment\" (field 3) is not valid UTF-8"),
            (10, "has 5 fields, but the header has 4"),
            (11, "has 2 fields, but the header has 4"),
            (
                12,
                "broken quoting on line 12: a quote inside an unquoted field",
            ),
            (13, "broken quoting on line 13: text after a closing quote"),
            (14, "column \"comment\" (field 3) contains a NUL byte"),
            (15, "over the limit of 200 (--max-record-bytes)"),
            (19, "quoted field opened on line 19 never closes"),
        ],
        refused: None,
    },
    Case {
        file: "bad_rows.jsonl",
        args: SMALL_LIMIT,
        good: &[1, 17, 19],
        bad: &[
            (2, "line is a JSON array, not an object"),
            (3, "line is a JSON string, not an object"),
            (4, "line is a JSON number, not an object"),
            (5, "line is a JSON null, not an object"),
            (6, "line is not valid JSON"),
            (7, "ticket_id is missing"),
            (8, "ticket_id is empty"),
            (9, "sub_status is empty"),
            (10, "callback_time \"tomorrow\""),
            (11, "line is not valid UTF-8"),
            (12, "line is not valid JSON: control character"),
            (13, "ticket_id 12.5 is not a whole number"),
            (14, "sub_status must be text, not a JSON object"),
            (15, "over the limit of 200 (--max-record-bytes)"),
            (18, "line is not valid JSON: trailing characters"),
        ],
        refused: None,
    },
    Case {
        file: "mixed_line_endings.csv",
        args: &[],
        good: &[2, 3, 4, 5, 7],
        bad: &[],
        refused: None,
    },
    Case {
        file: "mixed_line_endings.jsonl",
        args: &[],
        good: &[1, 2, 4],
        bad: &[],
        refused: None,
    },
    Case {
        file: "duplicate_headers.csv",
        args: &[],
        good: &[],
        bad: &[],
        refused: Some("column \"comment\" more than once (columns 3, 4)"),
    },
    Case {
        file: "duplicate_unused_headers.csv",
        args: &[],
        good: &[2, 3],
        bad: &[],
        refused: None,
    },
    Case {
        file: "empty.csv",
        args: &[],
        good: &[],
        bad: &[],
        refused: None,
    },
    Case {
        file: "empty.jsonl",
        args: &[],
        good: &[],
        bad: &[],
        refused: None,
    },
    Case {
        file: "header_only.csv",
        args: &[],
        good: &[],
        bad: &[],
        refused: None,
    },
    // A UTF-16 byte order mark is decoded, not refused.
    Case {
        file: "utf16.csv",
        args: &[],
        good: &[2],
        bad: &[],
        refused: None,
    },
    Case {
        file: "utf16.jsonl",
        args: &[],
        good: &[1],
        bad: &[],
        refused: None,
    },
    // Real export shapes (issue 12): European Excel, UTF-16 from Excel's "Unicode text",
    // Zendesk's UTC times, US dates.
    Case {
        file: "european_excel.csv",
        args: &[
            "--encoding",
            "windows-1252",
            "--mapping",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/bad/european_excel.toml"
            ),
        ],
        good: &[2, 3, 4],
        bad: &[
            (
                6,
                "callback_time \"31/02/2026 10:00\" matches none of the [formats]",
            ),
            (7, "sub_status \"Inconnu\" (from \"Statut\") is not allowed"),
            (8, "does not exist in Europe/Paris"),
        ],
        refused: None,
    },
    Case {
        file: "european_excel.csv",
        args: &[
            "--delimiter",
            ",",
            "--mapping",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/bad/european_excel.toml"
            ),
        ],
        good: &[],
        bad: &[],
        refused: Some("with --delimiter ';' the file has every column the mapping names"),
    },
    Case {
        file: "utf16_bom.csv",
        args: &[],
        good: &[2, 3],
        bad: &[(4, "sub_status is empty")],
        refused: None,
    },
    Case {
        file: "zendesk_utc.jsonl",
        args: &[
            "--mapping",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/bad/zendesk_utc.toml"
            ),
        ],
        good: &[1, 2, 3, 4, 5],
        bad: &[(6, "callback_time \"tomorrow\" matches none")],
        refused: None,
    },
    Case {
        file: "us_dates.csv",
        args: &[
            "--mapping",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/bad/us_dates.toml"
            ),
        ],
        good: &[2, 3, 4],
        bad: &[
            (5, "does not exist in America/New_York"),
            (6, "callback_time \"31/12/2026 6:00 PM\" matches none"),
        ],
        refused: None,
    },
    Case {
        file: "binary.bin",
        args: &["--format", "csv"],
        good: &[],
        bad: &[],
        refused: Some("the header row is unusable"),
    },
    Case {
        file: "deeply_nested.jsonl",
        args: &[],
        good: &[1, 4],
        bad: &[
            (2, "recursion limit exceeded"),
            (3, "recursion limit exceeded"),
        ],
        refused: None,
    },
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad")
        .join(name)
}

/// Exit 0, 1 or 2 and no panic message: whatever the input, kapsync answers, never crashes.
fn assert_no_panic(what: &str, out: &Output) {
    let code = out.status.code();
    assert!(
        matches!(code, Some(0..=2)),
        "{what}: exit {code:?}, stderr: {}",
        stderr(out)
    );
    assert!(!stderr(out).contains("panicked"), "{what}: {}", stderr(out));
}

/// Ingests `path` into a run of its own and checks the stored rows against the case.
async fn check(ws: &Workspace, run: &str, path: &Path, case: &Case) {
    let what = case.file;
    let out = ws
        .kapsync()
        .args(["ingest", "--run", run])
        .args(case.args)
        .arg(path)
        .output()
        .unwrap();
    assert_no_panic(what, &out);
    if let Some(message) = case.refused {
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(message) && err.contains(&path.display().to_string()),
            "{what}: {err}"
        );
        let store = Store::open(&ws.db()).await.unwrap();
        if let Some(run) = store.find_run(run).await.unwrap() {
            let sources = store.sources(run.id).await.unwrap();
            assert!(
                sources.is_empty(),
                "{what}: a refused file left {sources:?}"
            );
        }
        return;
    }
    let expect_exit = if case.bad.is_empty() { 0 } else { 1 };
    assert_eq!(
        out.status.code(),
        Some(expect_exit),
        "{what}: {}",
        stderr(&out)
    );
    let jobs = ws.jobs(Some(run)).await;
    let pending: Vec<i64> = jobs
        .iter()
        .filter(|j| j.state == "pending")
        .map(|j| j.line)
        .collect();
    assert_eq!(pending, case.good, "{what}: lines stored pending");
    let invalid: Vec<(i64, String)> = jobs
        .iter()
        .filter(|j| j.state == "invalid")
        .map(|j| (j.line, j.error_message.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        invalid.iter().map(|i| i.0).collect::<Vec<_>>(),
        case.bad.iter().map(|b| b.0).collect::<Vec<_>>(),
        "{what}: lines stored invalid: {invalid:?}"
    );
    for ((line, reason), (_, want)) in invalid.iter().zip(case.bad) {
        assert!(
            reason.contains(want),
            "{what} line {line}: {reason:?} lacks {want:?}"
        );
    }
    assert_eq!(
        jobs.len(),
        case.good.len() + case.bad.len(),
        "{what}: no other rows"
    );
    for job in jobs.iter().filter(|j| j.state == "pending") {
        let payload: serde_json::Value =
            serde_json::from_str(job.payload.as_deref().unwrap()).unwrap();
        assert!(payload["ticket_id"].is_string(), "{what}: {payload}");
        assert_eq!(payload["ticket_id"].as_str(), job.ticket_id.as_deref());
    }
}

#[tokio::test]
async fn no_corpus_file_panics_or_loses_a_good_row() {
    let ws = Workspace::new();
    for (i, case) in CASES.iter().enumerate() {
        check(&ws, &format!("corpus-{i}"), &fixture(case.file), case).await;
    }
}

#[tokio::test]
async fn every_corpus_file_through_standard_input_too() {
    // Standard input has no name to tell the format from and is hashed as it is read.
    let ws = Workspace::new();
    for case in CASES.iter().filter(|c| !c.file.ends_with(".bin")) {
        let format = if case.file.ends_with(".csv") {
            "csv"
        } else {
            "jsonl"
        };
        let out = ws
            .kapsync()
            .args(["ingest", "--format", format, "-"])
            .args(case.args)
            .pipe_stdin(fixture(case.file))
            .unwrap()
            .output()
            .unwrap();
        assert_no_panic(case.file, &out);
        let want = if case.refused.is_some() {
            2
        } else if case.bad.is_empty() {
            0
        } else {
            1
        };
        assert_eq!(out.status.code(), Some(want), "{}", stderr(&out));
    }
}

/// Runs the binary on `args` and returns its output and peak resident memory in KiB.
#[cfg(target_os = "linux")]
fn run_measured(ws: &Workspace, args: &[&std::ffi::OsStr]) -> (Output, u64) {
    let bin = assert_cmd::cargo::cargo_bin("kapsync");
    let time = Path::new("/usr/bin/time");
    let mut cmd = if time.exists() {
        let mut cmd = std::process::Command::new(time);
        cmd.args(["-f", "peak-kib=%M"]).arg(&bin);
        cmd
    } else {
        std::process::Command::new(&bin)
    };
    cmd.current_dir(ws.dir.path())
        .env_remove("RUST_LOG")
        .arg("--db")
        .arg(ws.db())
        .arg("--no-progress")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    // Without GNU time, poll the high-water mark while the process lives (it only grows).
    let polled = std::thread::spawn(move || {
        let mut peak = 0;
        while let Ok(status) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            {
                peak = kib;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        peak
    });
    let out = child.wait_with_output().unwrap();
    let polled = polled.join().unwrap();
    let measured = stderr(&out)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak-kib="))
        .and_then(|v| v.trim().parse().ok());
    (out, measured.unwrap_or(polled))
}

/// Memory bound for a run over a 10 MB line: the record limit (1 MiB) is what may be held.
#[cfg(target_os = "linux")]
const PEAK_LIMIT_KIB: u64 = 100 * 1024;

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_10_mb_line_is_reported_with_little_memory() {
    let ws = Workspace::new();
    let ten_mb = 10 * 1024 * 1024;
    let good_csv = "400000000002,CL,fine\n";
    let mut csv = String::from("ticket_id,sub_status,comment\n");
    csv.push_str(good_csv);
    csv.push_str("400000000003,P,");
    csv.push_str(&"x".repeat(ten_mb));
    csv.push_str("\n400000000004,CL,after\n");
    let jsonl = format!(
        "{{\"ticket_id\":\"410000000001\",\"sub_status\":\"CL\"}}\n\
         {{\"ticket_id\":\"410000000002\",\"sub_status\":\"CL\",\"c\":\"{}\"}}\n\
         {{\"ticket_id\":\"410000000003\",\"sub_status\":\"P\"}}\n",
        "y".repeat(ten_mb)
    );
    let files = [
        (ws.file("long_row.csv", &csv), "long-csv"),
        (ws.file("long_line.jsonl", &jsonl), "long-jsonl"),
        // The whole file one line: as CSV it is the header.
        (ws.file("one_line.csv", "z".repeat(ten_mb)), "one-csv"),
        (ws.file("one_line.jsonl", "[".repeat(ten_mb)), "one-jsonl"),
    ];
    for (path, run) in &files {
        let (out, peak_kib) = run_measured(
            &ws,
            &[
                "ingest".as_ref(),
                "--run".as_ref(),
                run.as_ref(),
                path.as_os_str(),
            ],
        );
        assert_no_panic(run, &out);
        assert!(
            peak_kib > 0 && peak_kib < PEAK_LIMIT_KIB,
            "{run}: peak memory {peak_kib} KiB"
        );
        let jobs = if *run == "one-csv" {
            assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
            assert!(
                stderr(&out).contains("over the limit of 1048576"),
                "{}",
                stderr(&out)
            );
            continue;
        } else {
            assert_eq!(out.status.code(), Some(1), "{run}: {}", stderr(&out));
            ws.jobs(Some(run)).await
        };
        let states: Vec<(i64, &str)> = jobs.iter().map(|j| (j.line, j.state.as_str())).collect();
        let expect: &[(i64, &str)] = match *run {
            "long-csv" => &[(2, "pending"), (3, "invalid"), (4, "pending")],
            "long-jsonl" => &[(1, "pending"), (2, "invalid"), (3, "pending")],
            _ => &[(1, "invalid")],
        };
        assert_eq!(states, expect, "{run}");
        let bytes = match *run {
            "long-csv" => csv.lines().nth(2).unwrap().len(),
            "long-jsonl" => jsonl.lines().nth(1).unwrap().len(),
            _ => ten_mb,
        };
        let reason = jobs
            .iter()
            .find_map(|j| j.error_message.as_deref())
            .unwrap();
        assert!(
            reason.contains(&format!(
                "is {bytes} bytes, over the limit of 1048576 (--max-record-bytes)"
            )),
            "{run}: {reason}"
        );
    }
}

#[tokio::test]
async fn a_hundred_thousand_brackets_are_one_invalid_row() {
    let ws = Workspace::new();
    let deep_array = "[".repeat(100_000);
    let deep_object = format!(
        "{{\"ticket_id\":\"420000000003\",\"sub_status\":\"P\",\"x\":{}1{}}}",
        "{\"a\":".repeat(100_000),
        "}".repeat(100_000)
    );
    let input = format!(
        "{{\"ticket_id\":\"420000000001\",\"sub_status\":\"CL\"}}\n{deep_array}\n{deep_object}\n\
         {{\"ticket_id\":\"420000000004\",\"sub_status\":\"CL\"}}\n"
    );
    let path = ws.file("deep.jsonl", input);
    let out = ws.kapsync().arg("ingest").arg(&path).output().unwrap();
    assert_no_panic("deep.jsonl", &out);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let jobs = ws.jobs(None).await;
    let got: Vec<(i64, &str, bool)> = jobs
        .iter()
        .map(|j| {
            let deep = j
                .error_message
                .as_deref()
                .is_some_and(|m| m.contains("recursion limit exceeded"));
            (j.line, j.state.as_str(), deep)
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, "pending", false),
            (2, "invalid", true),
            (3, "invalid", true),
            (4, "pending", false)
        ]
    );
}

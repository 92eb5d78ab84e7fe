//! Nightly migrations through the binary, against the simulator's ledger: only what changed is
//! sent, retry keeps each ticket's order, a database belongs to one Kapture, and every hint
//! works when pasted as printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;

use kapsync::simulator::{LedgerEntry, SimConfig, SimHandle};
use kapsync::store::Store;
use serde_json::Value;

use crate::support::{Workspace, start_sim, stderr, stdout};

const TOKEN: &str = "delta-test-token";

/// A snapshot export of `tickets` tickets; `changed` tickets get another comment.
fn export(tickets: usize, changed: &[usize]) -> String {
    let mut csv = String::from("ticket_id,sub_status,comment\n");
    for i in 0..tickets {
        let night = if changed.contains(&i) { 2 } else { 1 };
        csv.push_str(&format!(
            "{},CL,ticket {i} as of night {night}\n",
            ticket(i)
        ));
    }
    csv
}

fn ticket(i: usize) -> String {
    format!("{}", 600_000_000_000u64 + i as u64)
}

/// `kapsync ARGS` in the workspace, with the token in the environment.
fn kapsync(ws: &Workspace, args: &[&str]) -> Output {
    ws.kapsync()
        .env("KAPTURE_TOKEN", TOKEN)
        .args(args)
        .output()
        .expect("the binary runs")
}

/// `kapsync sync FILE` into `run` (a new timed run when `None`), unthrottled.
fn sync(ws: &Workspace, sim: &SimHandle, file: &Path, run: Option<&str>, extra: &[&str]) -> Output {
    let url = sim.base_url();
    let file = file.to_str().unwrap();
    let mut args = vec!["sync", file, "--rate", "0", "--json", "--base-url", &url];
    if let Some(run) = run {
        args.extend(["--run", run]);
    }
    args.extend(extra);
    kapsync(ws, &args)
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

fn successes(ledger: &[LedgerEntry]) -> Vec<&LedgerEntry> {
    ledger.iter().filter(|e| e.outcome == "success").collect()
}

fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn night_two_sends_exactly_the_five_changed_or_new_rows_in_a_new_run_or_the_same() {
    for same_run in [false, true] {
        let sim = start_sim(SimConfig::default()).await;
        let ws = Workspace::new();
        let night1 = ws.file("night1.csv", export(400, &[]));
        let (run1, run2) = if same_run { ("r", "r") } else { ("n1", "n2") };
        assert_code(&sync(&ws, &sim, &night1, Some(run1), &[]), 0);
        assert_eq!(successes(&sim.ledger()).len(), 400);

        let night2 = ws.file("night2.csv", export(402, &[10, 20, 30]));
        let out = sync(&ws, &sim, &night2, Some(run2), &[]);
        assert_code(&out, 0);
        let report = json(&out);
        assert_eq!(report["ingest"]["changed"], 5, "{report}");
        assert_eq!(report["ingest"]["unchanged"], 397, "{report}");
        let ledger = sim.ledger();
        assert_eq!(ledger.len(), 405, "same run: {same_run}");
        let sent: BTreeSet<String> = ledger[400..]
            .iter()
            .map(|e| e.ticket_id.clone().unwrap())
            .collect();
        let expected: BTreeSet<String> = [10, 20, 30, 400, 401].map(ticket).into();
        assert_eq!(sent, expected);

        let status = json(&kapsync(&ws, &["status", "--run", run2, "--json"]));
        assert_eq!(status["counts"]["skipped"], 397, "{status}");
        let rows = crate::support::jobs_in(&ws.db(), Some(run2)).await;
        let skipped_row = rows
            .iter()
            .rev()
            .find(|r| r.ticket_id.as_deref() == Some(&*ticket(11)))
            .unwrap();
        assert_eq!(skipped_row.state, "skipped");
        assert_eq!(
            skipped_row.error_message.as_deref(),
            Some(&*format!("unchanged since run {run1}, line 13"))
        );
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_that_goes_op_cl_op_is_sent_every_time_and_not_a_fourth() {
    let sim = start_sim(SimConfig::default()).await;
    let ws = Workspace::new();
    for (night, status, sent) in [(1, "OP", 1), (2, "CL", 2), (3, "OP", 3), (4, "OP", 3)] {
        let file = ws.file(
            &format!("night{night}.csv"),
            format!("ticket_id,sub_status,comment\n600000000001,{status},state\n"),
        );
        assert_code(&sync(&ws, &sim, &file, Some(&format!("n{night}")), &[]), 0);
        assert_eq!(sim.ledger().len(), sent, "after night {night}");
    }
    // --resend-unchanged sends it anyway.
    let file = ws.file(
        "again.csv",
        "ticket_id,sub_status,comment\n600000000001,OP,state\n",
    );
    let out = sync(&ws, &sim, &file, Some("n5"), &["--resend-unchanged"]);
    assert_code(&out, 0);
    assert_eq!(sim.ledger().len(), 4);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_key_sends_each_comment_once_ever() {
    let sim = start_sim(SimConfig::default()).await;
    let ws = Workspace::new();
    let mapping = ws.file(
        "events.toml",
        "[columns]\nticket_id = \"Ticket\"\nsub_status = \"Status\"\ncomment = \"Body\"\n\
         [delta]\nkey = [\"Comment Id\"]\n",
    );
    let mapping = mapping.to_str().unwrap();
    let header = "Ticket,Status,Comment Id,Body\n";
    let night1 = ws.file(
        "events1.csv",
        format!("{header}600000000001,OP,c1,first\n600000000001,OP,c2,second\n"),
    );
    let night2 = ws.file(
        "events2.csv",
        format!(
            "{header}600000000001,OP,c1,first\n600000000001,OP,c2,second\n\
             600000000001,OP,c3,third\n"
        ),
    );
    assert_code(
        &sync(&ws, &sim, &night1, Some("e1"), &["--mapping", mapping]),
        0,
    );
    assert_code(
        &sync(&ws, &sim, &night2, Some("e2"), &["--mapping", mapping]),
        0,
    );
    let comments: Vec<String> = sim
        .ledger()
        .iter()
        .map(|e| e.comment.clone().unwrap())
        .collect();
    assert_eq!(comments, ["first", "second", "third"]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ab_retry_experiment_leaves_no_ticket_in_its_older_state() {
    let sim = start_sim(SimConfig {
        fail_rate: 0.3,
        seed: 7,
        ..SimConfig::default()
    })
    .await;
    let ws = Workspace::new();
    let mut csv = String::from("ticket_id,sub_status,comment\n");
    for i in 0..50 {
        csv.push_str(&format!("{},OP,A\n", ticket(i)));
        csv.push_str(&format!("{},CL,B\n", ticket(i)));
    }
    let file = ws.file("ab.csv", csv);
    let first = sync(&ws, &sim, &file, Some("ab"), &["--max-attempts", "1"]);
    assert_code(&first, 1);
    let url = sim.base_url();
    let mut left_out = 0;
    let mut finished = false;
    for _ in 0..20 {
        let retry = kapsync(&ws, &["retry", "--run", "ab", "--json"]);
        assert_code(&retry, 0);
        left_out += json(&retry)["superseded"].as_u64().unwrap();
        let run = kapsync(
            &ws,
            &[
                "run",
                "--run",
                "ab",
                "--rate",
                "0",
                "--max-attempts",
                "1",
                "--base-url",
                &url,
            ],
        );
        if run.status.code() == Some(0) {
            finished = true;
            break;
        }
        assert_code(&run, 1);
    }
    assert!(finished, "the retries never converged");
    assert!(left_out > 0, "some A failed after its B succeeded");
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for entry in successes(&sim.ledger()) {
        last.insert(
            entry.ticket_id.clone().unwrap(),
            entry.comment.clone().unwrap(),
        );
    }
    assert_eq!(last.len(), 50);
    let older: Vec<&String> = last
        .iter()
        .filter(|(_, c)| *c == "A")
        .map(|(t, _)| t)
        .collect();
    assert!(
        older.is_empty(),
        "tickets left in the older state: {older:?}"
    );
    // The A rows left failed are resolved: status shows them apart and they fail nothing.
    let status = json(&kapsync(&ws, &["status", "--run", "ab", "--json"]));
    assert_eq!(status["failures"]["open"], 0, "{status}");
    assert_eq!(status["failures"]["resolved"], status["counts"]["failed"]);
    let text = stdout(&kapsync(&ws, &["status", "--run", "ab"]));
    assert!(text.contains("resolved by a later row"), "{text}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supersede_skips_the_older_pending_rows_of_a_key() {
    let sim = start_sim(SimConfig::default()).await;
    let ws = Workspace::new();
    let night1 = ws.file("night1.csv", export(400, &[]));
    let night2 = ws.file("night2.csv", export(402, &[10, 20, 30]));
    assert_code(
        &kapsync(&ws, &["ingest", "--run", "n1", night1.to_str().unwrap()]),
        0,
    );
    let out = kapsync(
        &ws,
        &[
            "ingest",
            "--run",
            "n2",
            "--supersede",
            "--json",
            night2.to_str().unwrap(),
        ],
    );
    assert_code(&out, 0);
    let report = json(&out);
    assert_eq!(report["superseded"], 3, "{report}");
    let rows = crate::support::jobs_in(&ws.db(), Some("n1")).await;
    let row = rows.iter().find(|r| r.line == 12).unwrap();
    assert_eq!(row.ticket_id.as_deref(), Some(&*ticket(10)));
    assert_eq!(row.state, "skipped");
    assert_eq!(
        row.error_message.as_deref(),
        Some("superseded by run n2, line 12")
    );
    let url = sim.base_url();
    assert_code(
        &kapsync(&ws, &["run", "--rate", "0", "--base-url", &url]),
        0,
    );
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 402, "each ticket once");
    for i in [10, 20, 30] {
        let entry = ledger
            .iter()
            .find(|e| e.ticket_id.as_deref() == Some(&*ticket(i)))
            .unwrap();
        assert_eq!(
            entry.comment.as_deref(),
            Some(&*format!("ticket {i} as of night 2"))
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_belongs_to_one_kapture_until_retargeted() {
    let first = start_sim(SimConfig::default()).await;
    let second = start_sim(SimConfig::default()).await;
    let ws = Workspace::new();
    let night1 = ws.file("night1.csv", export(400, &[]));
    assert_code(&sync(&ws, &first, &night1, Some("n1"), &[]), 0);

    // Without a target, the recorded one.
    let night2 = ws.file("night2.csv", export(402, &[10, 20, 30]));
    assert_code(
        &kapsync(&ws, &["ingest", "--run", "n2", night2.to_str().unwrap()]),
        0,
    );
    assert_code(&kapsync(&ws, &["run", "--run", "n2", "--rate", "0"]), 0);
    assert_eq!(first.ledger().len(), 405);

    // Another target is refused, naming the database's.
    let night3 = ws.file("night3.csv", export(402, &[5, 10, 20, 30]));
    assert_code(
        &kapsync(&ws, &["ingest", "--run", "n3", night3.to_str().unwrap()]),
        0,
    );
    let other = second.base_url();
    let refused = kapsync(
        &ws,
        &["run", "--run", "n3", "--rate", "0", "--base-url", &other],
    );
    assert_code(&refused, 2);
    let message = stderr(&refused);
    assert!(
        message.contains(&format!("this database belongs to {}", first.base_url())),
        "{message}"
    );
    assert!(message.contains("--retarget"), "{message}");
    assert!(second.ledger().is_empty());

    // Dry runs check the same binding: the recorded target without one, a refusal with
    // another (also for sync's scratch copy), and nothing sent either way.
    let planned = kapsync(&ws, &["run", "--run", "n3", "--dry-run"]);
    assert_code(&planned, 0);
    assert!(
        stdout(&planned).contains(&format!("target: {}/", first.base_url())),
        "{}",
        stdout(&planned)
    );
    for args in [
        vec!["run", "--run", "n3", "--dry-run", "--base-url", &other],
        vec![
            "sync",
            night3.to_str().unwrap(),
            "--dry-run",
            "--base-url",
            &other,
        ],
    ] {
        let planned = kapsync(&ws, &args);
        assert_code(&planned, 2);
        let text = stdout(&planned);
        assert!(
            text.contains("target: ERROR this database belongs to"),
            "{text}"
        );
    }
    assert!(second.ledger().is_empty());
    assert_eq!(first.ledger().len(), 405);

    // --retarget moves it, and is recorded.
    let moved = kapsync(
        &ws,
        &[
            "run",
            "--run",
            "n3",
            "--rate",
            "0",
            "--base-url",
            &other,
            "--retarget",
        ],
    );
    assert_code(&moved, 0);
    assert_eq!(second.ledger().len(), 1);
    let status = json(&kapsync(&ws, &["status", "--json"]));
    assert_eq!(status["target"]["base_url"], other, "{status}");
    assert_eq!(status["target"]["retarget"], true);

    // Unchanged rows are compared only with what went to the new target.
    let again = kapsync(
        &ws,
        &["ingest", "--run", "n4", "--json", night3.to_str().unwrap()],
    );
    let report = json(&again);
    assert_eq!(report["unchanged"], 1, "{report}");
    assert_eq!(report["changed"], 401, "{report}");
    first.shutdown().await;
    second.shutdown().await;
}

/// Runs a printed hint as a person would paste it: through the shell, in the workspace, with
/// `kapsync` meaning the binary under test.
fn paste(ws: &Workspace, hint: &str) -> Output {
    let command = hint.trim();
    let rest = command
        .strip_prefix("kapsync ")
        .unwrap_or_else(|| panic!("not a kapsync command: {command}"));
    let binary = assert_cmd::cargo::cargo_bin("kapsync");
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("'{}' {rest}", binary.display()))
        .current_dir(ws.dir.path())
        .env("KAPTURE_TOKEN", TOKEN)
        .env_remove("KAPSYNC_DB")
        .output()
        .expect("sh runs")
}

/// The text between the first `open` after `marker` and the next `close`.
fn between<'a>(text: &'a str, marker: &str, open: &str, close: &str) -> &'a str {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in:\n{text}"));
    let rest = &text[at + marker.len()..];
    let start = rest.find(open).unwrap() + open.len();
    let end = rest[start..].find(close).unwrap() + start;
    &rest[start..end]
}

/// `kapsync --db nightly.db ARGS` in the workspace, as a person would type it.
fn typed(ws: &Workspace, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("kapsync"));
    cmd.current_dir(ws.dir.path())
        .env("KAPTURE_TOKEN", TOKEN)
        .env_remove("KAPSYNC_DB")
        .args(["--db", "nightly.db"])
        .args(args);
    cmd.output().expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_printed_hint_works_when_pasted_as_printed() {
    let sim = start_sim(SimConfig::default()).await;
    let ws = Workspace::new();
    let url = sim.base_url();
    // Ingest into a database with no target yet: the rehearsal is what works as printed.
    ws.file("night1.csv", export(12, &[]));
    let out = typed(&ws, &["ingest", "--run", "first", "night1.csv"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let next = between(&text, "Next:", " ", "   (");
    assert_eq!(next, "kapsync --db nightly.db run --run first --dry-run");
    // The rehearsal shows the plan; with no target yet it exits 2, as the real run would.
    let out = paste(&ws, next);
    assert_code(&out, 2);
    assert!(stdout(&out).contains("Run first: 12 rows would be sent"));

    // Stopped by --max-duration at 5 requests/s: the resume hint, now with a target recorded.
    let out = typed(
        &ws,
        &[
            "run",
            "--run",
            "first",
            "--base-url",
            &url,
            "--max-duration",
            "1s",
        ],
    );
    assert_code(&out, 4);
    let text = stdout(&out);
    let resume = between(&text, "stopped early", "`", "`");
    assert_eq!(resume, "kapsync --db nightly.db run --run first");
    assert_code(&paste(&ws, resume), 0);
    assert_eq!(successes(&sim.ledger()).len(), 12);

    // A rejected row: the export and retry hints, then the retry's own hint.
    ws.file(
        "night2.csv",
        "ticket_id,sub_status,comment\n600000000001,ZZ,rejected\n",
    );
    let out = typed(
        &ws,
        &["sync", "night2.csv", "--run", "second", "--base-url", &url],
    );
    assert_code(&out, 1);
    let summary = stdout(&out);
    let export = between(&summary, "next:", " ", "   (");
    assert_eq!(
        export,
        "kapsync --db nightly.db export --run second --state failed -o failed.csv"
    );
    assert_code(&paste(&ws, export), 0);
    assert!(ws.dir.path().join("failed.csv").exists());
    let retry = between(&summary, "(fix, then", " ", ")");
    let out = paste(&ws, retry);
    assert_code(&out, 0);
    let text = stdout(&out);
    let send = between(&text, "back to pending;", "`", "`");
    assert_eq!(send, "kapsync --db nightly.db run --run second");
    // The row is rejected again: the command works, the row still fails.
    assert_code(&paste(&ws, send), 1);

    // An ingest into the bound database says to run, and more invalid rows than it quotes.
    let mut csv = String::from("ticket_id,sub_status,comment\n600000000002,CL,fine\n");
    for _ in 0..7 {
        csv.push_str(",CL,no ticket id\n");
    }
    ws.file("night3.csv", csv);
    let out = typed(&ws, &["ingest", "--run", "third", "night3.csv"]);
    assert_code(&out, 1);
    let text = stdout(&out);
    let more = between(&text, "... and 2 more", "(", ")");
    assert_code(&paste(&ws, more), 0);
    let next = text.lines().find_map(|l| l.strip_prefix("Next: ")).unwrap();
    assert_eq!(next, "kapsync --db nightly.db run --run third");
    assert_code(&paste(&ws, next), 1);
    assert_eq!(successes(&sim.ledger()).len(), 13);
    let store = Store::open(&ws.dir.path().join("nightly.db"))
        .await
        .unwrap();
    assert!(store.target_binding().await.unwrap().is_some());
    store.close().await;
    sim.shutdown().await;
}

/// A configuration halt (every request answered 404) says how to retry the rows it failed:
/// both the log line on stderr and the summary on stdout, with `--db` and the run quoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_halt_hint_works_when_pasted_as_printed() {
    let sim = start_sim(SimConfig::default()).await;
    let ws = Workspace::new();
    ws.file("night1.csv", export(25, &[]));
    ws.file("night2.csv", export(3, &[]));
    assert_code(
        &typed(&ws, &["ingest", "--run", "night one", "night1.csv"]),
        0,
    );
    assert_code(&typed(&ws, &["ingest", "--run", "later", "night2.csv"]), 0);
    let wrong = format!("{}/not-kapture", sim.base_url());
    let out = typed(&ws, &["run", "--run", "night one", "--base-url", &wrong]);
    assert_code(&out, 2);
    let logged = stderr(&out);
    let summary = stdout(&out);
    for text in [&logged, &summary] {
        let hint = between(text, "rows failed before the halt:", " ", ")");
        assert_eq!(
            hint,
            "kapsync --db nightly.db retry --run 'night one' --class rejected"
        );
        let out = paste(&ws, hint);
        assert_code(&out, 0);
        assert!(
            stdout(&out).contains("of run night one"),
            "{}",
            stdout(&out)
        );
    }
    sim.shutdown().await;
}

//! Reliability proofs that RELIABILITY.md cites: kill -9 chaos during `run` and `ingest`, the
//! fault matrix, secret hygiene at trace level, and one runner per database.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kapsync::simulator::{Latency, LedgerEntry, SimConfig};
use kapsync::store::Store;

use crate::support::{
    Workspace, drain, eventually, fast_config, ingest_rows, jobs_in, rows_csv, start_sim, stderr,
    stdout,
};

async fn integrity(db: &Path) -> String {
    let store = Store::open(db).await.unwrap();
    let result = store.integrity_check().await.unwrap();
    store.close().await;
    result
}

/// Sends SIGKILL and reaps the process.
#[cfg(unix)]
fn kill_9(child: &mut Child) {
    Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

/// Waits for a child to exit on its own, up to `deadline`; kills it and fails after that.
async fn wait_for_exit(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let mut status = None;
    eventually(deadline, || {
        status = child.try_wait().unwrap();
        status.is_some()
    })
    .await;
    match status {
        Some(status) => status,
        None => {
            let _ = child.kill();
            panic!("the process did not exit within {deadline:?}");
        }
    }
}

/// `kapsync run` of run `r` against `base_url`, quiet, with no rate limit.
fn spawn_run(ws: &Workspace, base_url: &str, concurrency: usize) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("kapsync"))
        .arg("--db")
        .arg(ws.db())
        .args(["--no-progress", "-q", "run", "--run", "r", "--rate", "0"])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--base-url", base_url])
        .env("KAPTURE_TOKEN", "t")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The seed of a randomised test: `KAPSYNC_CHAOS_SEED` when set, else `default`.
fn seed(default: u64) -> u64 {
    std::env::var("KAPSYNC_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// What a chaos run measured; RELIABILITY.md quotes these.
#[derive(Debug)]
struct ChaosFigures {
    seed: u64,
    kills: usize,
    rows: usize,
    /// Sum over kills of the rows found `in_flight` right after the kill.
    in_flight_at_kills: u64,
    /// Sum over kills of the successes a killed runner left in the journal of chain steps
    /// (rows still `in_flight` in `jobs`, their chain not ended).
    journaled_at_kills: u64,
    /// Rows the final database marks replayed.
    replayed_rows: usize,
    /// Applications beyond the first, over all rows.
    extra_applications: usize,
    /// Rows applied more than once.
    rows_applied_twice: usize,
    requests: u64,
}

impl ChaosFigures {
    /// One line for the test's output and RELIABILITY.md.
    fn summary(&self) -> String {
        format!(
            "seed {}: {} kills survived, {} rows all succeeded; {} rows in flight at the kills \
             ({} of them recorded in the journal of chain steps), {} rows replayed, {} rows applied twice or more ({} extra applications); {} \
             requests ({:.3} per row)",
            self.seed,
            self.kills,
            self.rows,
            self.in_flight_at_kills,
            self.journaled_at_kills,
            self.replayed_rows,
            self.rows_applied_twice,
            self.extra_applications,
            self.requests,
            self.requests as f64 / self.rows as f64
        )
    }
}

/// Kills `kapsync run` with SIGKILL `kills` times at random moments (a random delay after the
/// start, or a random number of applied updates), restarting it each time, then lets the
/// last runner finish; checks every promise against the database and the simulator's ledger.
#[cfg(unix)]
async fn chaos_run(seed: u64, kills: usize, rows: usize, tickets: usize) -> ChaosFigures {
    let ws = Workspace::new();
    ingest_rows(&ws, rows, tickets);
    chaos_on(ws, seed, kills, rows).await
}

/// [`chaos_run`] on a workspace whose run `r` holds `rows` rows, commented `<ticket>-<seq>`.
#[cfg(unix)]
async fn chaos_on(ws: Workspace, seed: u64, kills: usize, rows: usize) -> ChaosFigures {
    let sim = start_sim(SimConfig {
        seed,
        latency: Some(Latency::Range(
            Duration::from_millis(2),
            Duration::from_millis(10),
        )),
        ..SimConfig::default()
    })
    .await;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut in_flight_at_kills = 0;
    let mut journaled_at_kills = 0;
    let mut killed = 0;
    while killed < kills {
        let mut child = spawn_run(&ws, &sim.base_url(), 8);
        if rng.bool() {
            // A random moment: start-up, recovery, claiming, sending, writing results.
            tokio::time::sleep(Duration::from_micros(rng.u64(0..60_000))).await;
        } else {
            let target = sim.stats().succeeded + rng.u64(1..=12);
            eventually(Duration::from_secs(30), || {
                sim.stats().succeeded >= target || child.try_wait().unwrap().is_some()
            })
            .await;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("after {killed} kills the runner finished on its own ({status}): add rows");
        }
        kill_9(&mut child);
        killed += 1;
        let jobs = ws.jobs(Some("r")).await;
        in_flight_at_kills += jobs.iter().filter(|j| j.state == "in_flight").count() as u64;
        let store = Store::open(&ws.db()).await.unwrap();
        journaled_at_kills += store.chain_steps_left().await.unwrap() as u64;
        store.close().await;
    }
    let mut child = spawn_run(&ws, &sim.base_url(), 8);
    let status = wait_for_exit(&mut child, Duration::from_secs(300)).await;
    let ledger = sim.ledger();
    let requests = sim.stats().requests;
    sim.shutdown().await;
    assert_eq!(status.code(), Some(0), "the last runner finished cleanly");

    let jobs = ws.jobs(Some("r")).await;
    assert_eq!(jobs.len(), rows);
    let unfinished: Vec<_> = jobs.iter().filter(|j| j.state != "succeeded").collect();
    assert!(unfinished.is_empty(), "rows not succeeded: {unfinished:?}");
    assert_eq!(integrity(&ws.db()).await, "ok");

    let (extra_applications, rows_applied_twice) = check_ledger(&ledger, rows);
    assert!(
        extra_applications as u64 <= in_flight_at_kills,
        "{extra_applications} re-applications, but only {in_flight_at_kills} rows were in \
         flight at the {kills} kills"
    );
    ChaosFigures {
        seed,
        kills: killed,
        rows,
        in_flight_at_kills,
        journaled_at_kills,
        replayed_rows: jobs.iter().filter(|j| j.replayed).count(),
        extra_applications,
        rows_applied_twice,
        requests,
    }
}

/// Checks that every row was applied and each ticket's rows arrived in input order (a row may
/// repeat right after itself, never after a later row). Returns the applications beyond the
/// first and the number of rows applied more than once.
fn check_ledger(ledger: &[LedgerEntry], rows: usize) -> (usize, usize) {
    let mut per_ticket: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut per_comment: HashMap<String, usize> = HashMap::new();
    for entry in ledger.iter().filter(|e| e.outcome == "success") {
        let comment = entry.comment.clone().unwrap();
        let seq: u32 = comment.rsplit('-').next().unwrap().parse().unwrap();
        per_ticket
            .entry(entry.ticket_id.clone().unwrap())
            .or_default()
            .push(seq);
        *per_comment.entry(comment).or_default() += 1;
    }
    assert_eq!(per_comment.len(), rows, "every row applied at least once");
    for (ticket, seqs) in &per_ticket {
        assert!(
            seqs.windows(2).all(|w| w[0] <= w[1]),
            "ticket {ticket} applied out of order: {seqs:?}"
        );
        let distinct: BTreeSet<u32> = seqs.iter().copied().collect();
        assert_eq!(
            distinct,
            (1..=distinct.len() as u32).collect(),
            "ticket {ticket}"
        );
    }
    let extra = per_comment.values().map(|n| n - 1).sum();
    let twice = per_comment.values().filter(|n| **n > 1).count();
    (extra, twice)
}

#[cfg(unix)]
#[expect(clippy::print_stderr, reason = "the figures are the test's report")]
// The binary is waited for while the in-process simulator serves it: it needs its own threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_9_during_run_loses_nothing_and_keeps_ticket_order() {
    let figures = chaos_run(seed(5), 25, 800, 160).await;
    eprintln!("{}", figures.summary());
    assert_eq!(figures.kills, 25);
}

/// A history sorted by ticket: `tickets` tickets x `per_ticket` consecutive rows, so every
/// ticket goes out as chains of 32 rows, each row committed to the journal of chain steps
/// before the next is sent. Kills land between a chain's journaled steps: each ticket's ledger
/// must still never go back (an older row applied after a newer one).
#[cfg(unix)]
#[expect(clippy::print_stderr, reason = "the figures are the test's report")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_9_during_a_drain_of_long_chains_never_applies_an_older_row_after_a_newer() {
    let (tickets, per_ticket) = (24, 60);
    let mut csv = String::from("ticket_id,sub_status,comment\n");
    for t in 0..tickets {
        for n in 1..=per_ticket {
            csv.push_str(&format!("{},CL,t{t}-{n}\n", 300_000_000_000u64 + t as u64));
        }
    }
    let ws = Workspace::new();
    let path = ws.file("rows.csv", csv);
    ws.kapsync()
        .args(["ingest", "--run", "r"])
        .arg(&path)
        .assert()
        .code(0);
    let figures = chaos_on(ws, seed(11), 15, tickets * per_ticket).await;
    eprintln!("{}", figures.summary());
    assert_eq!(figures.kills, 15);
    assert!(
        figures.journaled_at_kills > 0,
        "no kill left a chain's recorded steps behind: the test proves nothing ({})",
        figures.summary()
    );
}

/// The long mode: `cargo test --test integration chaos_long -- --ignored --nocapture`.
#[cfg(unix)]
#[expect(clippy::print_stderr, reason = "the figures are the test's report")]
#[ignore = "long: 200 kills; run with --ignored"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_long_200_kills_during_run() {
    let started = Instant::now();
    let figures = chaos_run(seed(2024), 200, 6000, 600).await;
    eprintln!(
        "{}; {:.0} s",
        figures.summary(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(figures.kills, 200);
}

/// Every line number of a run's rows, with the number of rows.
async fn lines_of(db: &Path, run: &str) -> (usize, BTreeSet<i64>) {
    let store = Store::open(db).await.unwrap();
    let run = store.resolve_run(Some(run)).await.unwrap();
    let mut lines = BTreeSet::new();
    let mut count = 0;
    let mut after = 0;
    loop {
        let page = store.job_rows(run.id, None, after, 50_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        count += page.len();
        lines.extend(page.iter().map(|j| j.line));
    }
    store.close().await;
    (count, lines)
}

/// Rows of a run's source files recorded as committed (0 before the run exists).
async fn committed_rows(store: &Store, run: &str) -> i64 {
    match store.find_run(run).await.unwrap() {
        Some(run) => store
            .sources(run.id)
            .await
            .unwrap()
            .iter()
            .map(|s| s.rows_read)
            .sum(),
        None => 0,
    }
}

/// Waits until an ingest into `run` commits rows beyond `committed` or `child` exits, with one
/// connection held open, so polling costs the ingest nothing.
async fn wait_for_commit(db: &Path, run: &str, committed: i64, child: &mut Child) {
    let store = Store::open(db).await.unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while committed_rows(&store, run).await == committed
        && child.try_wait().unwrap().is_none()
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.close().await;
}

/// Rows a run holds (0 before the run exists).
async fn held_rows(db: &Path, run: &str) -> usize {
    let store = Store::open(db).await.unwrap();
    let rows = match store.find_run(run).await.unwrap() {
        Some(run) => store.counts(run.id).await.unwrap().total(),
        None => 0,
    };
    store.close().await;
    rows as usize
}

#[cfg(unix)]
#[expect(
    clippy::print_stderr,
    reason = "the kill moments are the test's report"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_9_during_ingest_then_rerun_holds_each_row_exactly_once() {
    const ROWS: usize = 300_000;
    let ws = Workspace::new();
    let path = ws.file("big.csv", rows_csv(ROWS, 50_000));
    let mut rng = fastrand::Rng::with_seed(seed(9));
    let spawn = || {
        Command::new(assert_cmd::cargo::cargo_bin("kapsync"))
            .arg("--db")
            .arg(ws.db())
            .args(["--no-progress", "-q", "ingest", "--run", "big"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Six kills: four at a random delay after the start (hashing, skipping committed lines,
    // parsing, inside the first transaction) and two at a random delay after the attempt's
    // first commit (the next transaction, or inside a commit), so partly ingested files are
    // certain whatever this machine's speed. Then one ingest runs to its end.
    let mut kills = Vec::new();
    let mut partial = 0;
    let status = loop {
        let store = Store::open(&ws.db()).await.unwrap();
        let committed = committed_rows(&store, "big").await;
        store.close().await;
        let mut child = spawn();
        if kills.len() == 6 {
            break wait_for_exit(&mut child, Duration::from_secs(300)).await;
        }
        let after_commit = kills.len() % 3 == 2;
        if after_commit {
            wait_for_commit(&ws.db(), "big", committed, &mut child).await;
        }
        let delay = Duration::from_millis(rng.u64(0..if after_commit { 800 } else { 2000 }));
        tokio::time::sleep(delay).await;
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        kill_9(&mut child);
        let held = held_rows(&ws.db(), "big").await;
        if held > 0 && held < ROWS {
            partial += 1;
        }
        kills.push((after_commit, delay.as_millis(), held));
    };
    eprintln!("ingest kills (after a commit?, delay ms, rows held after the kill): {kills:?}");
    assert_eq!(status.code(), Some(0), "the last ingest exited normally");
    assert!(kills.len() >= 3, "only {} kills landed", kills.len());
    assert!(
        partial > 0,
        "no kill left a partly ingested file: {kills:?}"
    );
    let (count, lines) = lines_of(&ws.db(), "big").await;
    assert_eq!(count, ROWS, "no row twice, none missing");
    assert_eq!(lines, (2..=ROWS as i64 + 1).collect::<BTreeSet<_>>());
    assert_eq!(integrity(&ws.db()).await, "ok");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_is_refused_naming_the_first_and_a_killed_runner_does_not_block() {
    let ws = Workspace::new();
    ingest_rows(&ws, 300, 100);
    let sim = start_sim(SimConfig::default()).await;
    let mut first = Command::new(assert_cmd::cargo::cargo_bin("kapsync"))
        .arg("--db")
        .arg(ws.db())
        .args(["--no-progress", "run", "--rate", "5"])
        .args(["--base-url", &sim.base_url()])
        .env("KAPTURE_TOKEN", "t")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first runner holds the lock once it sends.
    assert!(eventually(Duration::from_secs(30), || sim.stats().requests >= 1).await);
    let second = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args(["run", "--rate", "0", "--base-url", &sim.base_url()])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    let message = stderr(&second);
    assert!(
        message.contains("another kapsync runner")
            && message.contains(&format!("pid {}", first.id())),
        "{message}"
    );
    let requests_before = sim.stats().requests;

    kill_9(&mut first);
    // The lock file still names the dead runner: only the operating-system lock is gone.
    let mut lock_path = ws.db().into_os_string();
    lock_path.push(".lock");
    let holder = std::fs::read_to_string(PathBuf::from(lock_path)).unwrap();
    assert_eq!(holder.trim(), first.id().to_string());

    let third = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args(["run", "--rate", "0", "--base-url", &sim.base_url()])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let stats = sim.stats();
    sim.shutdown().await;
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
    assert!(stats.requests > requests_before);
    let jobs = ws.jobs(Some("r")).await;
    assert!(jobs.iter().all(|j| j.state == "succeeded"));
}

/// One row of the fault matrix: a kind of fault (or a mix) and the share of requests it fails.
#[derive(Debug, Clone)]
struct Fault {
    name: &'static str,
    /// Rows drained per cell.
    rows: usize,
    /// The simulator's settings; `None` for the scripted 429-without-Retry-After server.
    sim: Option<SimConfig>,
    /// Share of requests that fail (and are sent again): 1 - Π(1 - rate) over the fault rates.
    failure_share: f64,
    /// The client's request timeout.
    timeout: Duration,
}

/// Rows per cell under random 429s, fewer than elsewhere: the engine answers each 429 by
/// halving its rate (down to 1 request/s) and climbs back only after 5 s without one, which
/// a server that throttles a fixed share of requests never grants.
const THROTTLED_ROWS: usize = 40;

fn faults() -> Vec<Fault> {
    let sim = |f: fn(&mut SimConfig)| {
        let mut config = SimConfig {
            seed: 31,
            ..SimConfig::default()
        };
        f(&mut config);
        Some(config)
    };
    let quick = Duration::from_secs(10);
    let short = Duration::from_millis(300);
    vec![
        Fault {
            name: "5xx 20%",
            rows: 80,
            sim: sim(|c| c.fail_rate = 0.2),
            failure_share: 0.2,
            timeout: quick,
        },
        Fault {
            name: "429 + Retry-After 10%",
            rows: THROTTLED_ROWS,
            sim: sim(|c| c.throttle_rate = 0.1),
            failure_share: 0.1,
            timeout: quick,
        },
        Fault {
            name: "429, no Retry-After 10% (scripted)",
            rows: THROTTLED_ROWS,
            sim: None,
            failure_share: 0.1,
            timeout: quick,
        },
        Fault {
            name: "hang past timeout 10%",
            rows: 80,
            sim: sim(|c| {
                c.hang_rate = 0.1;
                c.hang_for = Duration::from_secs(60);
            }),
            failure_share: 0.1,
            timeout: short,
        },
        Fault {
            name: "dropped connection 15%",
            rows: 80,
            sim: sim(|c| c.drop_rate = 0.15),
            failure_share: 0.15,
            timeout: quick,
        },
        Fault {
            name: "slow answers 1-30 ms",
            rows: 80,
            sim: sim(|c| {
                c.latency = Some(Latency::Range(
                    Duration::from_millis(1),
                    Duration::from_millis(30),
                ));
            }),
            failure_share: 0.0,
            timeout: quick,
        },
        Fault {
            name: "all of them",
            rows: 80,
            sim: sim(|c| {
                c.fail_rate = 0.1;
                c.throttle_rate = 0.05;
                c.hang_rate = 0.03;
                c.hang_for = Duration::from_secs(60);
                c.drop_rate = 0.05;
                c.latency = Some(Latency::Range(
                    Duration::from_millis(0),
                    Duration::from_millis(5),
                ));
            }),
            failure_share: 1.0 - 0.95 * 0.97 * 0.9 * 0.95,
            timeout: short,
        },
    ]
}

/// A measured cell of the fault matrix.
#[derive(Debug)]
struct CellResult {
    fault: &'static str,
    concurrency: usize,
    rows: i64,
    succeeded: i64,
    /// Requests that reached the server.
    requests: u64,
    expected: f64,
    millis: u64,
}

impl CellResult {
    fn amplification(&self) -> f64 {
        self.requests as f64 / self.rows as f64
    }

    /// Within 35% (plus 0.1 for small samples) of 1 / (1 - failure share), either way.
    fn amplification_ok(&self) -> bool {
        let a = self.amplification();
        a >= 1.0 && a >= self.expected / 1.35 - 0.1 && a <= self.expected * 1.35 + 0.1
    }
}

/// A scripted Kapture that answers a seeded share of requests 429 without Retry-After and
/// applies the rest; it records the applied `(ticket_id, comment)` pairs in answer order.
async fn throttling_server(
    share: f64,
    seed: u64,
) -> (wiremock::MockServer, Arc<Mutex<Vec<LedgerEntry>>>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate, matchers::method};
    let server = MockServer::start().await;
    let applied = Arc::new(Mutex::new(Vec::new()));
    let seen = AtomicU64::new(0);
    let books = applied.clone();
    Mock::given(method("POST"))
        .respond_with(move |request: &Request| {
            let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
            let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n);
            if rng.f64() < share {
                return ResponseTemplate::new(429)
                    .set_body_string(r#"{"status":"failed","message":"Too many requests"}"#);
            }
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            let update = body[0].clone();
            books.lock().unwrap().push(LedgerEntry {
                seq: n,
                at_ms: 0,
                ticket_id: update["ticket_id"].as_str().map(str::to_owned),
                digest: String::new(),
                comment: update["comment"].as_str().map(str::to_owned),
                outcome: "success".into(),
                http_status: Some(200),
            });
            ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "status": "success", "message": "Ticket updated successfully", "ticket": update,
            }))
        })
        .mount(&server)
        .await;
    (server, applied)
}

async fn run_cell(fault: Fault, concurrency: usize) -> CellResult {
    let rows = fault.rows;
    let ws = Workspace::new();
    ingest_rows(&ws, rows, rows / 4);
    let config = fast_config(concurrency, 0);
    let (report, requests, ledger) = match &fault.sim {
        Some(sim_config) => {
            let sim = start_sim(sim_config.clone()).await;
            let report = drain(&ws.db(), &sim.base_url(), &config, fault.timeout).await;
            let (ledger, requests) = (sim.ledger(), sim.stats().requests);
            sim.shutdown().await;
            (report, requests, ledger)
        }
        None => {
            let (server, applied) = throttling_server(fault.failure_share, 31).await;
            let report = drain(&ws.db(), &server.uri(), &config, fault.timeout).await;
            let requests = server.received_requests().await.unwrap().len() as u64;
            let ledger = applied.lock().unwrap().clone();
            (report, requests, ledger)
        }
    };
    // Nothing here replays: each row is applied exactly once, in order per ticket.
    assert_eq!(check_ledger(&ledger, rows), (0, 0), "{}", fault.name);
    CellResult {
        fault: fault.name,
        concurrency,
        rows: rows as i64,
        succeeded: report.counts.succeeded,
        requests,
        expected: 1.0 / (1.0 - fault.failure_share),
        millis: report.duration_ms,
    }
}

#[expect(clippy::print_stderr, reason = "the table is the test's report")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_every_row_succeeds_and_retries_stay_near_the_failure_share() {
    // Cells run four at a time: the throttled ones spend most of their time waiting.
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    let mut cells = tokio::task::JoinSet::new();
    for (i, fault) in faults().into_iter().enumerate() {
        for (j, concurrency) in [1, 8, 32].into_iter().enumerate() {
            let (fault, permits) = (fault.clone(), permits.clone());
            cells.spawn(async move {
                let _permit = permits.acquire_owned().await.unwrap();
                (i * 3 + j, run_cell(fault, concurrency).await)
            });
        }
    }
    let mut results: Vec<(usize, CellResult)> = cells.join_all().await;
    results.sort_by_key(|(order, _)| *order);
    let results: Vec<CellResult> = results.into_iter().map(|(_, r)| r).collect();
    let mut table = String::from(
        "| fault | concurrency | rows | requests | requests/row | expected 1/(1-p) | drain ms |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &results {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {} |\n",
            r.fault,
            r.concurrency,
            r.rows,
            r.requests,
            r.amplification(),
            r.expected,
            r.millis
        ));
    }
    eprintln!("{table}");
    for r in &results {
        assert_eq!(r.succeeded, r.rows, "{r:?}");
        assert!(r.amplification_ok(), "{r:?}");
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// The binary is waited for while the in-process simulators serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_hygiene_the_token_appears_in_no_output_database_or_export_at_trace_level() {
    let canary = format!("KAPSYNC-CANARY-{:016x}", fastrand::u64(..));
    let ws = Workspace::new();
    let mut rows = rows_csv(30, 10);
    rows.push_str("100000000077,,no sub_status: invalid at ingest\n");
    rows.push_str("100000000078,ZZ,unknown sub_status: rejected by Kapture\n");
    let a = ws.file("a.csv", rows);
    let b = ws.file("b.csv", rows_csv(12, 4).replace("CL,", "P,"));
    let token_file = ws.file("token.txt", format!("{canary}\n"));
    let good = start_sim(SimConfig {
        token: Some(canary.clone()),
        seed: 3,
        fail_rate: 0.05,
        ..SimConfig::default()
    })
    .await;
    let wrong = start_sim(SimConfig {
        token: Some("a-different-token".into()),
        ..SimConfig::default()
    })
    .await;
    let (good_url, wrong_url) = (good.base_url(), wrong.base_url());
    let token_path = token_file.to_str().unwrap().to_owned();
    let mut outputs: Vec<(String, std::process::Output)> = Vec::new();
    // Runs one command at trace level, the token given through the environment or the file.
    let mut step = |args: &[&str], through_env: bool, code: i32| {
        let mut cmd = ws.kapsync();
        cmd.env("RUST_LOG", "trace").arg("-vv").args(args);
        if through_env {
            cmd.env("KAPTURE_TOKEN", &canary);
        } else {
            cmd.args(["--token-file", &token_path]);
        }
        let out = cmd.timeout(Duration::from_secs(120)).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "kapsync {args:?}\nstdout: {}\nstderr: {}",
            stdout(&out),
            stderr(&out)
        );
        outputs.push((args.join(" "), out));
    };
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    step(&["ingest", "--run", "a", a], true, 1);
    step(
        &["run", "--run", "a", "--rate", "0", "--base-url", &wrong_url],
        true,
        3,
    );
    // A runner killed mid-run leaves its WAL behind, with the pages it wrote: search that too.
    #[cfg(unix)]
    {
        let log = |name: &str| std::fs::File::create(ws.dir.path().join(name)).unwrap();
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("kapsync"))
            .arg("--db")
            .arg(ws.db())
            .args(["--no-progress", "-vv", "run", "--run", "a", "--rate", "5"])
            .args(["--base-url", &good_url])
            .env("KAPTURE_TOKEN", &canary)
            .env("RUST_LOG", "trace")
            .stdout(log("killed-run.stdout"))
            .stderr(log("killed-run.stderr"))
            .spawn()
            .unwrap();
        assert!(eventually(Duration::from_secs(30), || good.stats().succeeded >= 3).await);
        kill_9(&mut child);
        let mut wal = ws.db().into_os_string();
        wal.push("-wal");
        let wal = std::fs::read(PathBuf::from(wal)).expect("a killed runner leaves its WAL");
        assert!(!wal.is_empty());
        assert!(
            !contains_bytes(&wal, canary.as_bytes()),
            "the WAL of a killed runner"
        );
    }
    // Exit 1, as the real run would give: the run holds failed rows.
    step(
        &["run", "--run", "a", "--dry-run", "--base-url", &good_url],
        true,
        1,
    );
    step(
        &["run", "--run", "a", "--rate", "0", "--base-url", &good_url],
        false,
        1,
    );
    step(&["status", "--json"], true, 0);
    step(&["runs"], true, 0);
    step(&["retry", "--run", "a"], true, 0);
    step(
        &[
            "run",
            "--run",
            "a",
            "--json",
            "--rate",
            "0",
            "--base-url",
            &good_url,
        ],
        true,
        1,
    );
    step(
        &[
            "sync",
            "--run",
            "b",
            b,
            "--rate",
            "0",
            "--base-url",
            &good_url,
        ],
        false,
        0,
    );
    // A server that echoes the request headers back, token included, in its message (rows
    // it rejects), in the ticket snapshot (rows it accepts) and in a redirect's Location.
    let echo = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(|request: &wiremock::Request| {
            let headers = format!("{:?}", request.headers);
            let body = String::from_utf8_lossy(&request.body);
            if body.contains("t0-") {
                wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "status": "success", "message": "ok", "ticket": {"echo": headers}
                }))
            } else if body.contains("t1-") {
                wiremock::ResponseTemplate::new(302)
                    .insert_header("Location", format!("https://x.example/?h={headers}"))
            } else {
                wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "status": "failed", "message": format!("you sent {headers}")
                }))
            }
        })
        .mount(&echo)
        .await;
    let c = ws.file("c.csv", rows_csv(9, 3));
    let c = c.to_str().unwrap();
    step(
        &[
            "sync",
            "--run",
            "c",
            c,
            "--rate",
            "0",
            "--max-attempts",
            "1",
            "--base-url",
            &echo.uri(),
            // The database belongs to the first server: moving it is asked for.
            "--retarget",
        ],
        false,
        1,
    );
    let echoed = echo.received_requests().await.unwrap_or_default();
    assert!(
        echoed
            .iter()
            .any(|r| format!("{:?}", r.headers).contains(&canary)),
        "the echo server saw the token"
    );
    let export = |name: &str| ws.dir.path().join(name).to_str().unwrap().to_owned();
    step(
        &["export", "--run", "a", "-o", &export("export-a.csv")],
        true,
        0,
    );
    let jsonl = export("export-a.jsonl");
    step(
        &["export", "--run", "a", "--format", "jsonl", "-o", &jsonl],
        true,
        0,
    );
    step(
        &["export", "--run", "b", "-o", &export("export-b.csv")],
        true,
        0,
    );
    step(
        &["export", "--run", "c", "-o", &export("export-c.csv")],
        true,
        0,
    );
    step(
        &[
            "export",
            "--run",
            "c",
            "--format",
            "jsonl",
            "-o",
            &export("export-c.jsonl"),
        ],
        true,
        0,
    );
    step(&["status", "--run", "c"], true, 0);
    step(&["runs", "--json"], true, 0);
    // `run` at a wrong status code above does not check that trace logging was on.
    assert!(outputs.iter().any(|(_, out)| stderr(out).contains("TRACE")));
    let sent_with_canary = good.stats().succeeded;
    let refused = wrong.stats().auth;
    good.shutdown().await;
    wrong.shutdown().await;
    assert!(
        sent_with_canary > 0 && refused > 0,
        "the canary was really used"
    );

    let needle = canary.as_bytes();
    for (args, out) in &outputs {
        assert!(
            !contains_bytes(&out.stdout, needle),
            "stdout of kapsync {args}"
        );
        assert!(
            !contains_bytes(&out.stderr, needle),
            "stderr of kapsync {args}"
        );
    }
    let mut searched = Vec::new();
    for entry in std::fs::read_dir(ws.dir.path()).unwrap() {
        let file = entry.unwrap().path();
        if file == token_file {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains_bytes(&bytes, needle), "{}", file.display());
        searched.push(file.file_name().unwrap().to_string_lossy().into_owned());
    }
    for expected in [
        "kapsync.db",
        "export-a.csv",
        "export-a.jsonl",
        "export-b.csv",
        "export-c.csv",
        "killed-run.stderr",
    ] {
        assert!(searched.iter().any(|s| s == expected), "{searched:?}");
    }
    // What the echo server sent back is kept, with the token replaced.
    let jobs = ws.jobs(Some("c")).await;
    assert!(
        jobs.iter().any(|j| j
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("[token]"))),
        "{jobs:?}"
    );
    let c_jsonl = std::fs::read_to_string(ws.dir.path().join("export-c.jsonl")).unwrap();
    assert!(c_jsonl.contains("[token]"), "{c_jsonl}");
}

/// `status` (any command that only reads) must not wait for a writer in another process: it
/// used to end with a TRUNCATE checkpoint that waited until an ingest finished.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_during_an_ingest_returns_without_waiting_for_it() {
    let ws = Workspace::new();
    let path = ws.file("big.csv", rows_csv(300_000, 50_000));
    let mut ingest = Command::new(assert_cmd::cargo::cargo_bin("kapsync"))
        .arg("--db")
        .arg(ws.db())
        .args(["--no-progress", "-q", "ingest", "--run", "big"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // After its first commit the ingest holds the write lock until it ends.
    wait_for_commit(&ws.db(), "big", 0, &mut ingest).await;
    let status = ws.kapsync().args(["status", "--json"]).output().unwrap();
    let still_ingesting = ingest.try_wait().unwrap().is_none();
    let finished = wait_for_exit(&mut ingest, Duration::from_secs(300)).await;
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    assert!(still_ingesting, "status waited for the ingest to finish");
    assert_eq!(finished.code(), Some(0));
    assert!(
        !stderr(&status).contains("wal_checkpoint"),
        "{}",
        stderr(&status)
    );
}

/// Processes that open a new database at the same moment all succeed: they used to race in
/// the migrations, and the slower one exited 5 with "table runs already exists".
#[test]
fn commands_opening_a_new_database_at_once_all_succeed() {
    for round in 0..8 {
        let ws = Workspace::new();
        let files: Vec<PathBuf> = (0..3)
            .map(|i| ws.file(&format!("f{i}.csv"), rows_csv(5 + i, 5)))
            .collect();
        let children: Vec<Child> = files
            .iter()
            .enumerate()
            .map(|(i, file)| {
                Command::new(assert_cmd::cargo::cargo_bin("kapsync"))
                    .arg("--db")
                    .arg(ws.db())
                    .args(["--no-progress", "-q", "ingest", "--run", &format!("r{i}")])
                    .arg(file)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {round}: {}",
                stderr(&out)
            );
        }
    }
}

/// A small tmpfs mounted for one test and unmounted when dropped: a disk that can be filled
/// and then given more room. Mounting needs root (CI and the build machines have it).
#[cfg(target_os = "linux")]
struct SmallDisk {
    dir: PathBuf,
}

#[cfg(target_os = "linux")]
impl SmallDisk {
    /// Mounts `size_kib` KiB under `parent`, or None where mounting is not allowed.
    fn mount(parent: &Path, size_kib: u64) -> Option<SmallDisk> {
        let dir = parent.join("disk");
        std::fs::create_dir(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { dir })
    }

    /// Gives the disk a new size (smaller than its use leaves it full).
    fn resize(&self, size_kib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size_kib}k")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "remount to {size_kib} KiB");
    }

    /// KiB in use.
    fn used_kib(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=used", "-k"])
            .arg(&self.dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

#[cfg(target_os = "linux")]
impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[cfg(target_os = "linux")]
// The binary is waited for with blocking calls: the simulator needs its own threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(clippy::print_stderr, reason = "says why the test is skipped")]
async fn a_full_disk_stops_ingest_and_run_cleanly_and_both_resume() {
    let ws = Workspace::new();
    // Room for the schema's migrations (their WAL passes 1 MiB with 16 KiB pages), not for
    // the rows: a full disk while migrating is another test's matter.
    let Some(disk) = SmallDisk::mount(ws.dir.path(), 1536) else {
        eprintln!("skipped: mounting a tmpfs is not allowed here (needs root)");
        return;
    };
    let db = disk.dir.join("k.db");
    let kapsync = || {
        let mut cmd = assert_cmd::Command::cargo_bin("kapsync").unwrap();
        cmd.arg("--db").arg(&db).arg("--no-progress");
        cmd
    };
    let full = "the disk holding the database is full";
    let rows = 20_000;
    let csv = ws.file("rows.csv", rows_csv(rows, rows));

    // Ingest fills a 1.5 MiB disk: a clear error, then the same command finishes the file.
    let out = kapsync()
        .args(["ingest", "--run", "r"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains(full), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    disk.resize(64 * 1024);
    let out = kapsync()
        .args(["ingest", "--run", "r"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let jobs = jobs_in(&db, Some("r")).await;
    let lines: BTreeSet<i64> = jobs.iter().map(|j| j.line).collect();
    assert_eq!((jobs.len(), lines.len()), (rows, rows), "every row once");

    // The run fills what is left: it stops with the same advice, and the next run finishes.
    disk.resize(disk.used_kib() + 512);
    let sim = start_sim(SimConfig::default()).await;
    let run = || {
        let mut cmd = kapsync();
        cmd.args(["run", "--rate", "0", "--concurrency", "16"])
            .args(["--base-url", &sim.base_url()])
            .env("KAPTURE_TOKEN", "t");
        cmd.output().unwrap()
    };
    let out = run();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains(full), "{}", stderr(&out));
    disk.resize(64 * 1024);
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ledger = sim.ledger();
    sim.shutdown().await;
    let jobs = jobs_in(&db, Some("r")).await;
    assert!(
        jobs.iter().all(|j| j.state == "succeeded"),
        "every row sent"
    );
    let applied: BTreeSet<String> = ledger
        .iter()
        .filter(|e| e.outcome == "success")
        .filter_map(|e| e.comment.clone())
        .collect();
    assert_eq!(applied.len(), rows, "every row reached the server");
    assert_eq!(integrity(&db).await, "ok");
}

/// A worker or the result writer that panics ends `kapsync run` with exit 5, never a hang (the
/// command has a deadline); the runner lock is released, and the next run sends every row,
/// replaying those the panic left in flight. The panic is injected through the real binary by
/// `KAPSYNC_TEST_PANIC`, which only debug builds read.
#[cfg(debug_assertions)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_worker_or_writer_ends_the_run_with_exit_5_and_the_next_run_replays() {
    const ROWS: usize = 200;
    for (task, name) in [("worker", "worker"), ("writer", "result writer")] {
        let ws = Workspace::new();
        ingest_rows(&ws, ROWS, 50);
        let sim = start_sim(SimConfig::default()).await;
        let run = |panic: Option<&str>| {
            let mut cmd = ws.kapsync();
            cmd.env("KAPTURE_TOKEN", "t")
                .args(["run", "--run", "r", "--rate", "0", "--concurrency", "8"])
                .args(["--base-url", &sim.base_url(), "--json"])
                .timeout(Duration::from_secs(120));
            if let Some(task) = panic {
                cmd.env("KAPSYNC_TEST_PANIC", task);
            }
            cmd.output().unwrap()
        };

        let first = run(Some(task));
        let message = stderr(&first);
        assert_eq!(first.status.code(), Some(5), "{task}: {message}");
        assert!(
            message.contains(&format!("the {name} stopped unexpectedly")),
            "{task}: {message}"
        );
        let left = ws.jobs(Some("r")).await;
        let in_flight = left.iter().filter(|j| j.state == "in_flight").count();
        assert!(in_flight >= 1, "{task}: the panic left its rows in flight");

        // The lock was released with the failed run: the next one starts and finishes.
        let second = run(None);
        assert_eq!(second.status.code(), Some(0), "{task}: {}", stderr(&second));
        let report: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
        assert_eq!(
            report["runs"][0]["replayed"].as_u64(),
            Some(in_flight as u64),
            "{task}: every row left in flight is replayed"
        );
        let jobs = ws.jobs(Some("r")).await;
        assert!(jobs.iter().all(|j| j.state == "succeeded"), "{task}");
        let ledger = sim.ledger();
        sim.shutdown().await;
        check_ledger(&ledger, ROWS);
        assert_eq!(integrity(&ws.db()).await, "ok");
    }
}

//! Shared helpers: workspaces and the binary, the job table, a simulator on a free loopback
//! port, clients, payloads and polling.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use kapsync::engine::{self, DrainReport, EngineConfig, RetryPolicy, Shutdown};
use kapsync::kapture::{Client, Target, Token};
use kapsync::simulator::{SimConfig, SimHandle, Simulator};
use kapsync::store::{JobRow, Store};
use std::path::{Path, PathBuf};

/// Starts a simulator on 127.0.0.1 with a port the OS picks.
pub async fn start_sim(config: SimConfig) -> SimHandle {
    Simulator::start(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("the simulator starts on a free port")
}

/// A client for `base_url` with `token` and a request timeout.
pub fn client_with(base_url: &str, token: &str, timeout: Duration) -> Client {
    let target = Target::resolve(None, Some(base_url)).expect("a loopback base URL");
    Client::new(target, Token::new(token).expect("a valid token"), timeout).expect("a client")
}

/// A client for `base_url` with a test token and a 10 s timeout.
pub fn client(base_url: &str) -> Client {
    client_with(base_url, "test-token", Duration::from_secs(10))
}

/// One update object's JSON text.
pub fn update(ticket_id: &str, sub_status: &str, comment: &str) -> String {
    serde_json::json!({
        "ticket_id": ticket_id,
        "sub_status": sub_status,
        "comment": comment,
    })
    .to_string()
}

/// A loopback address nothing listens on (bound, then released).
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Polls `check` until it returns true or `deadline` passes.
pub async fn eventually(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// A temporary directory holding a database and input files.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("kapsync.db")
    }

    /// Writes a file into the workspace and returns its path.
    pub fn file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write input file");
        path
    }

    /// The binary, pointed at this workspace's database, with no progress drawing.
    pub fn kapsync(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("kapsync").expect("binary");
        cmd.current_dir(self.dir.path())
            .env_remove("KAPTURE_TOKEN")
            .env_remove("RUST_LOG")
            .arg("--db")
            .arg(self.db())
            .arg("--no-progress");
        cmd
    }

    /// Every job of the named run (or the latest), in id order.
    pub async fn jobs(&self, run: Option<&str>) -> Vec<JobRow> {
        jobs_in(&self.db(), run).await
    }
}

/// Every job of a run in the database at `db`.
pub async fn jobs_in(db: &Path, run: Option<&str>) -> Vec<JobRow> {
    let store = Store::open(db).await.expect("open database");
    let run = store.resolve_run(run).await.expect("run");
    let rows = store
        .job_rows(run.id, None, 0, i64::MAX)
        .await
        .expect("rows");
    store.close().await;
    rows
}

/// Standard output of a finished command as text.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error of a finished command as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The CSV text of `rows` updates over `tickets` tickets; comments are `t<ticket>-<seq>`, with
/// `seq` counting each ticket's rows from 1 in file order.
pub fn rows_csv(rows: usize, tickets: usize) -> String {
    let mut csv = String::from("ticket_id,sub_status,comment\n");
    let mut seq = vec![0; tickets];
    for i in 0..rows {
        let t = (i * 7919) % tickets;
        seq[t] += 1;
        csv.push_str(&format!(
            "{},CL,t{t}-{}\n",
            100_000_000_000u64 + t as u64,
            seq[t]
        ));
    }
    csv
}

/// Ingests [`rows_csv`] into run `r`.
pub fn ingest_rows(ws: &Workspace, rows: usize, tickets: usize) {
    let path = ws.file("rows.csv", rows_csv(rows, tickets));
    ws.kapsync()
        .args(["ingest", "--run", "r"])
        .arg(&path)
        .assert()
        .code(0);
}

/// Small backoff and throttle caps, so faults cost milliseconds, not seconds.
pub fn fast_config(concurrency: usize, rate: u32) -> EngineConfig {
    EngineConfig {
        concurrency,
        rate: f64::from(rate),
        burst: 1,
        max_attempts: 50,
        retry: RetryPolicy {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(100),
        },
        throttle_cap: Duration::from_millis(100),
        stop_deadline: Duration::from_secs(5),
        unreachable_timeout: Duration::from_secs(60),
        canary: 0,
        hint_prefix: "kapsync".to_owned(),
        record_limits: None,
    }
}

/// Drains run `r` in-process and checks the database's integrity afterwards.
pub async fn drain(
    db: &Path,
    base_url: &str,
    config: &EngineConfig,
    timeout: Duration,
) -> DrainReport {
    let store = Store::open(db).await.unwrap();
    let run = store.resolve_run(Some("r")).await.unwrap();
    let client = client_with(base_url, "secret-token", timeout);
    let (progress, _rx) = tokio::sync::watch::channel(engine::Progress::default());
    let store_thread = engine::StoreThread::start();
    let report = engine::drain(
        &store,
        &client,
        &run,
        config,
        &Shutdown::default(),
        progress,
        &store_thread.handle(),
    )
    .await
    .unwrap();
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
    store.close().await;
    report
}

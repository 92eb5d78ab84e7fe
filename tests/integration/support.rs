//! Shared helpers: workspaces and the binary, the job table, a simulator on a free loopback
//! port, clients, payloads and polling.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

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

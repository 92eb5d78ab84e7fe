//! Shared helpers: a temporary workspace, the binary, and reading back the job table.

use std::path::{Path, PathBuf};

use kapsync::store::{JobRow, Store};

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
    let rows = store.job_rows(run.id, None, 0, i64::MAX).await.expect("rows");
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

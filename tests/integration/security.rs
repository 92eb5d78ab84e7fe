//! Security promises RELIABILITY.md cites: no proxy for a loopback target, files that are
//! never followed through a link nor shared with another user, no escape codes on the
//! terminal, and a simulator that guards what it serves.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kapsync::simulator::SimConfig;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{Workspace, rows_csv, start_sim, stderr, stdout};

/// Whether this process may create files owned by another user (it runs as root).
#[cfg(unix)]
#[expect(clippy::print_stderr, reason = "a skipped case says so")]
fn can_act_as_another_user() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipped: the cross-user cases need root (to chown a file to another user)");
    }
    root
}

/// A user id that is not this process's: `nobody`.
#[cfg(unix)]
const OTHER_UID: u32 = 65534;

#[cfg(unix)]
fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// A listener that records the first line of every connection made to it.
struct FakeProxy {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakeProxy {
    fn start() -> FakeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                record.lock().unwrap().push(line.trim().to_owned());
                // Dropped: the client sees its proxy fail.
            }
        });
        FakeProxy { url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// This machine's name, when every address it resolves to is loopback.
fn own_loopback_name() -> Option<String> {
    use std::net::ToSocketAddrs as _;
    let name = std::fs::read_to_string("/etc/hostname")
        .ok()?
        .trim()
        .to_owned();
    let addrs: Vec<_> = (name.as_str(), 9).to_socket_addrs().ok()?.collect();
    (!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())).then_some(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_target_never_goes_through_a_proxy_even_when_the_environment_names_one() {
    let proxy = FakeProxy::start();
    let sim = start_sim(SimConfig::default()).await;
    let port = sim.base_url().rsplit(':').next().unwrap().to_owned();
    let mut targets = vec![
        ("ip", sim.base_url()),
        ("name", format!("http://localhost:{port}")),
    ];
    // The machine's own name, where it resolves only to loopback (as in many containers).
    if let Some(name) = own_loopback_name() {
        targets.push(("resolved", format!("http://{name}:{port}")));
    }
    let sent = targets.len() as u64 * 3;
    for (run, base_url) in targets {
        let ws = Workspace::new();
        let input = ws.file("in.csv", rows_csv(3, 3));
        let mut cmd = ws.kapsync();
        for var in [
            "http_proxy",
            "HTTP_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ] {
            cmd.env(var, &proxy.url);
        }
        let out = cmd
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env("KAPTURE_TOKEN", "t")
            .args(["sync", "--run", run, "--rate", "0", "--base-url", &base_url])
            .arg(&input)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let log = stderr(&out);
        assert!(
            log.contains(&format!(
                "sending to {base_url} (target from the command line or KAPSYNC_* environment; \
                 no proxy)"
            )),
            "{log}"
        );
    }
    assert_eq!(sim.stats().succeeded, sent);
    sim.shutdown().await;
    assert_eq!(
        proxy.seen(),
        Vec::<String>::new(),
        "the proxy was contacted"
    );
}

#[test]
fn another_target_goes_through_the_proxy_given_or_set_and_the_line_names_it_without_credentials() {
    let proxy = FakeProxy::start();
    let port = proxy.url.rsplit(':').next().unwrap().to_owned();
    let ws = Workspace::new();
    for run in ["flag", "environment"] {
        let input = ws.file(
            &format!("{run}.csv"),
            format!("ticket_id,sub_status,comment\n100000000001,CL,{run}\n"),
        );
        ws.kapsync()
            .args(["ingest", "--run", run])
            .arg(&input)
            .assert()
            .code(0);
    }
    let with_credentials = format!("http://user:PROXY-SECRET@127.0.0.1:{port}");
    let cases: [(&str, Option<&str>, &str); 2] = [
        ("flag", Some(&with_credentials), "(--proxy)"),
        (
            "environment",
            None,
            "(from the environment's proxy variables)",
        ),
    ];
    for (how, flag, whence) in cases {
        let mut cmd = ws.kapsync();
        cmd.env("KAPTURE_TOKEN", "t")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .args([
                "run",
                "--run",
                how,
                "--subdomain",
                "acme",
                "--max-attempts",
                "1",
            ])
            // Bounds the run whatever a failed proxy counts as.
            .args(["--max-duration", "20s"]);
        match flag {
            Some(url) => {
                cmd.args(["--proxy", url]);
            }
            None => {
                cmd.env("HTTPS_PROXY", &with_credentials);
            }
        }
        let out = cmd.timeout(Duration::from_secs(90)).output().unwrap();
        let log = stderr(&out);
        assert!(
            log.contains(
                "sending to https://acme.kapturecrm.com (target from the command line or \
                 KAPSYNC_* environment; through proxy http://"
            ) && log.contains(&format!("127.0.0.1:{port}")),
            "{how}: {log}"
        );
        assert!(log.contains(whence), "{how}: {log}");
        assert!(!log.contains("PROXY-SECRET"), "{how}: {log}");
        assert!(!stdout(&out).contains("PROXY-SECRET"), "{how}");
    }
    let seen = proxy.seen();
    assert!(
        seen.len() >= 2
            && seen
                .iter()
                .all(|line| line.starts_with("CONNECT acme.kapturecrm.com:443")),
        "{seen:?}"
    );
}

#[test]
fn plain_http_to_a_name_that_does_not_resolve_to_loopback_is_refused() {
    use std::net::ToSocketAddrs as _;
    let ws = workspace_with_db();
    let mut urls = vec![
        "http://kapsync-test.invalid:8080",
        "http://localhost.kapsync.invalid",
    ];
    // `localhost.` is a name the resolver answers for, not the literal `localhost`: where it
    // does not resolve (no DNS here), it is refused rather than trusted by its spelling.
    if ("localhost.", 9).to_socket_addrs().is_err() {
        urls.push("http://localhost.:9");
    }
    for url in urls {
        let out = ws
            .kapsync()
            .env("KAPTURE_TOKEN", "t")
            .args(["run", "--base-url", url])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}: {}", stderr(&out));
        assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));
    }
}

/// A database made by `ingest` in a fresh workspace.
fn workspace_with_db() -> Workspace {
    let ws = Workspace::new();
    let input = ws.file("in.csv", rows_csv(2, 2));
    ws.kapsync()
        .args(["ingest", "--run", "r"])
        .arg(&input)
        .assert()
        .code(0);
    ws
}

fn sibling(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    std::path::PathBuf::from(name)
}

#[cfg(unix)]
#[test]
fn a_linked_database_lock_or_wal_is_refused_and_nothing_is_written_through_it() {
    // A dangling link where the database goes: nothing is created at its target.
    let ws = Workspace::new();
    let input = ws.file("in.csv", rows_csv(2, 2));
    let target = ws.dir.path().join("elsewhere.db");
    std::os::unix::fs::symlink(&target, ws.db()).unwrap();
    let out = ws.kapsync().arg("ingest").arg(&input).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains(&ws.db().display().to_string()) && message.contains("symbolic link"),
        "{message}"
    );
    assert!(!target.exists());
    // `status` on a dangling link says it is a link, not that there is no database.
    let out = ws.kapsync().arg("status").output().unwrap();
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));

    // A link to a real database.
    let real = workspace_with_db();
    std::fs::remove_file(ws.db()).unwrap();
    std::os::unix::fs::symlink(real.db(), ws.db()).unwrap();
    let out = ws.kapsync().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));

    // A link where the WAL goes.
    let ws = workspace_with_db();
    let victim = ws.file("victim.txt", "keep me");
    std::os::unix::fs::symlink(&victim, sibling(&ws.db(), "-wal")).unwrap();
    let out = ws.kapsync().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("-wal: it is a symbolic link"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");

    // A link where the runner lock goes: refused, and the file it points at untouched.
    let ws = workspace_with_db();
    let victim = ws.file("victim.txt", "keep me");
    std::os::unix::fs::symlink(&victim, sibling(&ws.db(), ".lock")).unwrap();
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args(["run", "--base-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(".lock: it is a symbolic link"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
}

#[cfg(unix)]
#[test]
fn a_database_or_wal_others_can_read_is_refused_with_the_chmod_to_run() {
    let ws = workspace_with_db();
    assert_eq!(mode_of(&ws.db()), 0o600);
    chmod(&ws.db(), 0o666);
    let out = ws.kapsync().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("other users can read or write it (mode 666)")
            && message.contains(&format!("chmod 600 {}", ws.db().display())),
        "{message}"
    );
    chmod(&ws.db(), 0o600);
    let wal = sibling(&ws.db(), "-wal");
    std::fs::write(&wal, "").unwrap();
    chmod(&wal, 0o644);
    let out = ws.kapsync().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("-wal: other users"),
        "{}",
        stderr(&out)
    );
    chmod(&wal, 0o600);
    ws.kapsync().arg("status").assert().code(0);
    // The WAL and shared-memory files a run leaves are owner-only too.
    for file in ["-wal", "-shm"] {
        let path = sibling(&ws.db(), file);
        if path.exists() {
            assert_eq!(mode_of(&path), 0o600, "{file}");
        }
    }
}

#[cfg(unix)]
#[test]
fn files_another_user_owns_are_refused() {
    if !can_act_as_another_user() {
        return;
    }
    let give_away = |path: &std::path::Path| {
        std::os::unix::fs::lchown(path, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    };
    // A database another user created first (owner-only, so only ownership is wrong).
    let ws = workspace_with_db();
    give_away(&ws.db());
    let out = ws.kapsync().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("belongs to another user (uid {OTHER_UID})")),
        "{}",
        stderr(&out)
    );
    // Their WAL beside our database.
    let ws = workspace_with_db();
    let wal = sibling(&ws.db(), "-wal");
    std::fs::write(&wal, "").unwrap();
    chmod(&wal, 0o600);
    give_away(&wal);
    let out = ws.kapsync().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("-wal: it belongs to another user"),
        "{}",
        stderr(&out)
    );
    // Their lock file, with a pid of their choosing.
    let ws = workspace_with_db();
    let lock = ws.file("kapsync.db.lock", "1");
    chmod(&lock, 0o600);
    give_away(&lock);
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args(["run", "--base-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains(".lock: it belongs to another user"),
        "{message}"
    );
    assert!(!message.contains("pid 1"), "{message}");
}

#[cfg(unix)]
#[test]
fn export_replaces_a_file_only_with_force_and_never_writes_through_a_link() {
    let ws = workspace_with_db();
    let existing = ws.file("out.csv", "old contents");
    chmod(&existing, 0o644);
    let out = ws
        .kapsync()
        .args(["export", "-o"])
        .arg(&existing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "old contents");

    ws.kapsync()
        .args(["export", "--force", "-o"])
        .arg(&existing)
        .assert()
        .code(0);
    assert!(
        std::fs::read_to_string(&existing)
            .unwrap()
            .starts_with("source_file,")
    );
    assert_eq!(mode_of(&existing), 0o600, "the replaced file is owner-only");

    let victim = ws.file("victim.txt", "keep me");
    let link = ws.dir.path().join("link.csv");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let out = ws
        .kapsync()
        .args(["export", "-o"])
        .arg(&link)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    ws.kapsync()
        .args(["export", "--force", "-o"])
        .arg(&link)
        .assert()
        .code(0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.is_file(), "the link itself was replaced by the export");
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(ws.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");
}

#[cfg(unix)]
#[test]
fn a_token_file_others_can_read_gets_a_warning() {
    let ws = Workspace::new();
    let input = ws.file("in.csv", "ticket_id,sub_status\n");
    let token = ws.file("token", "t\n");
    chmod(&token, 0o644);
    let out = ws
        .kapsync()
        .args(["sync", "--base-url", "http://127.0.0.1:9", "--token-file"])
        .arg(&token)
        .arg(&input)
        .output()
        .unwrap();
    let log = stderr(&out);
    assert!(
        log.contains("can be read by other users (mode 644)") && log.contains("chmod 600"),
        "{log}"
    );
}

/// A server that answers every update "failed" with `message`.
async fn rejecting_server(status: u16, message: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(status)
                .set_body_json(serde_json::json!({"status": "failed", "message": message})),
        )
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_from_a_server_or_a_file_are_shown_escaped_and_long_messages_cut() {
    let ws = Workspace::new();
    let input = ws.file(
        "in.csv",
        "ticket_id,sub_status,\u{1b}]0;pwned\u{7}note\n100000000001,CL,x\n",
    );
    let out = ws
        .kapsync()
        .args(["ingest", "--run", "r"])
        .arg(&input)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("ignored columns: \\u{1b}]0;pwned\\u{7}note"),
        "{text}"
    );
    assert!(!out.stdout.contains(&0x1b), "{text}");

    let hostile = format!("\u{1b}[2J\u{1b}]0;owned\u{7}rejected {}", "x".repeat(5000));
    let server = rejecting_server(200, &hostile).await;
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args(["run", "--rate", "0", "--base-url", &server.uri()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\\u{1b}[2J\\u{1b}]0;owned\\u{7}rejected"),
        "{text}"
    );
    assert!(!out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b));
    assert!(text.len() < 2000, "{} bytes", text.len());
    // Stored capped at 1 KiB, with a note.
    let jobs = ws.jobs(Some("r")).await;
    let stored = jobs[0].error_message.as_deref().unwrap();
    assert!(stored.len() <= 1024 && stored.contains("[cut:"), "{stored}");

    // The HALTED line: the message escaped and cut, the advice whole.
    let auth = rejecting_server(
        401,
        &format!("Invalid Auth Key\u{1b}[31m{}", "y".repeat(5000)),
    )
    .await;
    ws.kapsync().args(["retry", "--run", "r"]).assert().code(0);
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args(["run", "--rate", "0", "--base-url", &auth.uri()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    let halted = text
        .lines()
        .find(|l| l.contains("HALTED:"))
        .unwrap_or_default();
    assert!(
        halted.contains("Invalid Auth Key\\u{1b}[31m")
            && halted.contains("more characters cut]")
            && halted.contains("run again"),
        "{text}"
    );
    assert!(!out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b));
}

#[test]
fn simulate_refuses_the_token_flag_and_an_open_bind_without_a_token() {
    let out = assert_cmd::Command::cargo_bin("kapsync")
        .unwrap()
        .env_remove("KAPTURE_TOKEN")
        .args(["simulate", "--port", "0", "--token", "SECRET"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--token-file"), "{}", stderr(&out));
    let out = assert_cmd::Command::cargo_bin("kapsync")
        .unwrap()
        .env_remove("KAPTURE_TOKEN")
        .args(["simulate", "--port", "0", "--bind", "0.0.0.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(
        message.contains("other machines may reach") && message.contains("without a token"),
        "{message}"
    );
}

#[test]
fn simulate_with_a_token_guards_its_inspection_routes() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "sim-secret\n").unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kapsync"))
        .args(["simulate", "--port", "0", "--token-file"])
        .arg(&token)
        .env_remove("KAPTURE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.strip_prefix("listening on ").unwrap().to_owned();
    let host = url.strip_prefix("http://").unwrap().to_owned();
    // One plain HTTP/1.1 GET, answered and closed.
    let get = |auth: &str| {
        let mut stream = std::net::TcpStream::connect(&host).unwrap();
        let request =
            format!("GET /_sim/ledger HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n");
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let refused = get("");
    let wrong = get("Authorization: Basic nope\r\n");
    let allowed = get("Authorization: Basic sim-secret\r\n");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
}

/// `export` to a terminal (a pseudo-terminal from util-linux `script`) escapes what the cells
/// hold; to a file or a pipe they stay exact.
#[cfg(unix)]
#[test]
#[expect(clippy::print_stderr, reason = "a skipped case says so")]
fn export_to_a_terminal_escapes_cells_and_to_a_file_keeps_them() {
    let has_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("skipped: util-linux `script` is needed for a pseudo-terminal");
        return;
    }
    let ws = Workspace::new();
    let input = ws.file(
        "in.csv",
        "ticket_id,sub_status,comment\n100000000001,CL,\u{1b}]0;pwned\u{7}x\n",
    );
    ws.kapsync()
        .args(["ingest", "--run", "r"])
        .arg(&input)
        .assert()
        .code(0);
    let piped = ws
        .kapsync()
        .args(["export", "--run", "r"])
        .output()
        .unwrap();
    assert!(
        stdout(&piped).contains("\u{1b}]0;pwned\u{7}x"),
        "a pipe gets the cell exact"
    );
    let command = format!(
        "'{}' --db '{}' --no-progress export --run r",
        assert_cmd::cargo::cargo_bin("kapsync").display(),
        ws.db().display()
    );
    let tty = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    let text = stdout(&tty);
    assert!(tty.status.success(), "{text}");
    assert!(text.contains("\\u{1b}]0;pwned\\u{7}x"), "{text}");
    assert!(!tty.stdout.contains(&0x1b), "{text}");
}

/// A kapsync.toml in the working directory can set where the token goes: the start line says
/// so, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_file_that_sets_the_target_is_named_by_the_start_line() {
    let sim = start_sim(SimConfig::default()).await;
    let base_url = sim.base_url();
    let ws = Workspace::new();
    ws.file("kapsync.toml", format!("base_url = \"{base_url}\"\n"));
    let input = ws.file("in.csv", rows_csv(2, 2));
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args(["sync", "--rate", "0"])
        .arg(&input)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    sim.shutdown().await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains(&format!(
            "sending to {base_url} (target from settings file kapsync.toml; no proxy)"
        )),
        "{log}"
    );
}

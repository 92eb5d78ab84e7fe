//! The command-line contract: the README tells the truth about `--help`, usage errors exit 2.

use crate::support::stderr;

/// The README's usage block, without trailing spaces.
fn readme_usage() -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("<!-- usage:start -->\n```text\n")
        .expect("usage start marker");
    let body = &readme[start..];
    let body = &body[body.find("```text\n").unwrap() + 8..];
    let end = body
        .find("```\n<!-- usage:end -->")
        .expect("usage end marker");
    trim_lines(&body[..end])
}

fn trim_lines(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

#[test]
fn readme_usage_block_equals_help() {
    let out = assert_cmd::Command::cargo_bin("kapsync")
        .unwrap()
        .env_clear()
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = trim_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(
        readme_usage(),
        help,
        "README.md's usage block differs from `kapsync --help`: paste the new help into it"
    );
}

#[test]
fn readme_starts_with_the_demo_and_the_tests() {
    let readme = include_str!("../../README.md");
    let first_block = readme.split("```sh\n").nth(1).unwrap();
    let commands: Vec<&str> = first_block
        .lines()
        .take_while(|l| !l.starts_with("```"))
        .map(|l| l.split('#').next().unwrap().trim())
        .collect();
    assert_eq!(commands, ["cargo run --release -- demo", "cargo test"]);
}

#[test]
fn every_documented_exit_code_is_in_the_readme_and_help() {
    let readme = include_str!("../../README.md");
    let help = assert_cmd::Command::cargo_bin("kapsync")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    for (code, _) in [
        (kapsync::exit::OK, "0"),
        (kapsync::exit::ROWS_FAILED, "1"),
        (kapsync::exit::USAGE, "2"),
        (kapsync::exit::AUTH_HALT, "3"),
        (kapsync::exit::STOPPED, "4"),
        (kapsync::exit::INTERNAL, "5"),
        (kapsync::exit::UNREACHABLE, "6"),
    ] {
        assert!(
            readme.contains(&format!("| {code} |")),
            "exit code {code} is not in the README"
        );
        assert!(
            crate::support::stdout(&help).contains(&format!("\n  {code}  ")),
            "exit code {code} is not in --help"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["run", "--rate", "fast"],
        &["run", "--max-duration", "soon"],
        &["ingest"],
    ] {
        let out = assert_cmd::Command::cargo_bin("kapsync")
            .unwrap()
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_run_without_a_target_or_token_is_a_usage_error_that_says_what_to_do() {
    let ws = crate::support::Workspace::new();
    let path = ws.file("a.csv", "ticket_id,sub_status\n1,CL\n");
    ws.kapsync().arg("ingest").arg(&path).assert().code(0);
    let out = ws.kapsync().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--subdomain"), "{}", stderr(&out));
    let out = ws
        .kapsync()
        .args(["run", "--subdomain", "acme"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("KAPTURE_TOKEN"), "{}", stderr(&out));
    let out = ws
        .kapsync()
        .env("KAPTURE_TOKEN", "t")
        .args(["run", "--base-url", "http://10.1.2.3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));
}

/// A token pasted into a settings or mapping file, or the token file given as one, never
/// reaches stderr (and so the cron log): parse errors say where, not what.
#[test]
fn parse_errors_name_the_place_and_never_echo_a_token() {
    const CANARY: &str = "CANARY-7f3a9c-token";
    let ws = crate::support::Workspace::new();
    let csv = ws.file("a.csv", "ticket_id,sub_status\n1,CL\n");
    let token_file = ws.file("token.txt", format!("{CANARY}\n"));
    let mapping = ws.file(
        "mapping.toml",
        format!("[columns]\nticket_id = \"No\"\n[values.sub_status]\nopen = \"{CANARY}\"\nx = 5\n"),
    );
    let check = |out: std::process::Output, place: &str| {
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(!text.contains(CANARY), "the token was echoed:\n{text}");
        assert!(text.contains(place), "no {place:?} in:\n{text}");
    };

    // A `token = ...` line in ./kapsync.toml, read by every command.
    ws.file("kapsync.toml", format!("rate = 5\ntoken = \"{CANARY}\"\n"));
    check(
        ws.kapsync().arg("status").output().unwrap(),
        "line 2, column 1",
    );
    // A wrong value quotes nothing either.
    ws.file("kapsync.toml", format!("rate = \"{CANARY}\"\n"));
    check(
        ws.kapsync().arg("status").output().unwrap(),
        "line 1, column 8",
    );
    std::fs::remove_file(ws.dir.path().join("kapsync.toml")).unwrap();
    // The token file given as --config or --mapping.
    check(
        ws.kapsync()
            .arg("--config")
            .arg(&token_file)
            .arg("status")
            .output()
            .unwrap(),
        "line 1, column",
    );
    check(
        ws.kapsync()
            .arg("ingest")
            .arg(&csv)
            .arg("--mapping")
            .arg(&token_file)
            .output()
            .unwrap(),
        "line 1, column",
    );
    // A wrong value in a mapping table, on the line after a token.
    check(
        ws.kapsync()
            .arg("ingest")
            .arg(&csv)
            .arg("--mapping")
            .arg(&mapping)
            .output()
            .unwrap(),
        "line 5, column 5",
    );
}

#[test]
fn completions_man_page_and_long_version() {
    let kapsync = || assert_cmd::Command::cargo_bin("kapsync").unwrap();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = kapsync().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let script = crate::support::stdout(&out);
        assert!(
            script.contains("kapsync") && script.contains("sync"),
            "{shell}"
        );
    }
    let out = kapsync().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let page = crate::support::stdout(&out);
    assert!(page.contains(".TH kapsync 1"), "{page}");
    for part in ["GLOBAL OPTIONS", "SUBCOMMANDS", "Exit codes"] {
        assert!(page.contains(part), "no {part} in the page");
    }

    let long = crate::support::stdout(&kapsync().arg("--version").output().unwrap());
    assert!(long.starts_with(&format!("kapsync {}\n", env!("CARGO_PKG_VERSION"))));
    assert!(
        long.contains("\ncommit: ") && long.contains("\nbuilt:  20"),
        "{long}"
    );
    let short = crate::support::stdout(&kapsync().arg("-V").output().unwrap());
    assert_eq!(short, format!("kapsync {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_lists_global_options_apart() {
    let out = assert_cmd::Command::cargo_bin("kapsync")
        .unwrap()
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = crate::support::stdout(&out);
    let global = help
        .find("Global options:")
        .expect("a global options heading");
    assert!(help[global..].contains("--db <PATH>"), "{help}");
    assert!(help[..global].contains("--rate <N>"), "{help}");
}

#[test]
fn simulate_and_demo_refuse_db_but_not_the_environment_variable() {
    let ws = crate::support::Workspace::new();
    for command in ["simulate", "demo"] {
        let out = ws.kapsync().arg(command).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        let text = stderr(&out);
        assert!(
            text.contains(&format!("`kapsync {command}` uses no database of yours")),
            "{text}"
        );
        assert!(!ws.db().exists(), "{command} created the database");
    }
    // KAPSYNC_DB exported for the real commands does not stop a demo.
    let out = assert_cmd::Command::cargo_bin("kapsync")
        .unwrap()
        .env("KAPSYNC_DB", ws.db())
        .args(["--no-progress", "demo", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!ws.db().exists(), "the demo wrote to KAPSYNC_DB");
}

/// `[profiles.NAME]` chosen by `--profile` or `KAPSYNC_PROFILE`: the profile beats the file's
/// top level, the environment beats the profile, and an unknown name lists the real ones.
#[test]
fn settings_profiles_through_the_binary() {
    let ws = crate::support::Workspace::new();
    let long = "x".repeat(60);
    ws.file(
        "a.csv",
        format!("ticket_id,sub_status,comment\n1,CL,{long}\n2,CL,{long}\n"),
    );
    ws.file(
        "kapsync.toml",
        "db = \"top.db\"\n\n[profiles.acme]\ndb = \"acme.db\"\nmax_record_bytes = 40\n\n\
         [profiles.beta]\ndb = \"beta.db\"\n",
    );
    let kapsync = || {
        let mut cmd = assert_cmd::Command::cargo_bin("kapsync").unwrap();
        cmd.current_dir(ws.dir.path())
            .env_remove("KAPSYNC_DB")
            .env_remove("KAPSYNC_PROFILE")
            .env_remove("KAPSYNC_MAX_RECORD_BYTES")
            .arg("--no-progress");
        cmd
    };
    let db = |name: &str| ws.dir.path().join(name);

    // The profile's small record limit makes every row invalid (exit 1), in acme.db.
    let out = kapsync()
        .env("KAPSYNC_PROFILE", "acme")
        .args(["ingest", "--run", "one", "a.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(db("acme.db").exists() && !db("top.db").exists());

    // The environment beats the profile: the same rows are valid.
    let out = kapsync()
        .env("KAPSYNC_MAX_RECORD_BYTES", "100000")
        .args(["--profile", "acme", "ingest", "--run", "two", "a.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // No profile: the top level.
    let out = kapsync().args(["ingest", "a.csv"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(db("top.db").exists());

    let out = kapsync()
        .args(["--profile", "prod", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no profile \"prod\" in kapsync.toml: its profiles are acme, beta"),
        "{}",
        stderr(&out)
    );
}

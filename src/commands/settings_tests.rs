//! The settings as the command layer builds them from a command line: precedence of defaults,
//! file, profile and flags, hints, and the defaults `--help` shows. Here because it parses
//! command lines (`cli`) into settings (`config`), which only the command layer may join.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{Cli, Command, RunOptions};
use crate::config::{ConfigError, DEFAULT_CONFIG_FILE, FileConfig, Settings};
use crate::engine::{DEFAULT_BURST, DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, DEFAULT_RATE};
use crate::ingest::DEFAULT_MAX_RECORD_BYTES;
use crate::kapture::DEFAULT_TIMEOUT_SECS;
use crate::store::DEFAULT_DB;

/// The command line `args` (after `kapsync`), parsed as clap would.
fn parse(args: &[&str]) -> Cli {
    use clap::Parser as _;
    Cli::try_parse_from(std::iter::once("kapsync").chain(args.iter().copied())).unwrap()
}

/// Settings from a settings file's text and a command line, as `Settings::resolve` builds
/// them. The file is passed with `--config`; its temporary path is then forgotten, so hints
/// read as if the file had been found by default.
fn resolved(file: &str, args: &[&str]) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kapsync.toml");
    std::fs::write(&path, file).unwrap();
    let mut line = vec!["--config", path.to_str().unwrap()];
    line.extend_from_slice(args);
    let mut settings = Settings::resolve(&parse(&line).global)?;
    settings.config_given = None;
    Ok(settings)
}

fn run_options(cli: Cli) -> RunOptions {
    match cli.command {
        Command::Run(args) => args.options,
        other => panic!("not a run: {other:?}"),
    }
}

const FILE: &str = r#"
rate = 3
burst = 2
concurrency = 3
subdomain = "acme"
db = "top.db"

[profiles.beta]
rate = 7
concurrency = 6
base_url = "http://127.0.0.1:8787"
db = "beta.db"

[profiles.gamma]
timeout = 9
"#;

#[test]
fn precedence_is_defaults_then_file_then_profile_then_flags() {
    let args = ["--profile", "beta", "run", "--rate", "11"];
    let settings = resolved(FILE, &args).unwrap();
    let run = settings.run(&run_options(parse(&args))).unwrap();
    assert_eq!(run.rate, 11.0, "a flag beats the profile");
    assert_eq!(run.canary, crate::engine::DEFAULT_CANARY);
    assert_eq!(
        run.unreachable_timeout,
        crate::engine::DEFAULT_UNREACHABLE_TIMEOUT
    );
    assert_eq!(run.concurrency, 6, "the profile beats the top level");
    assert_eq!(
        run.burst, 2,
        "the top level fills what the profile leaves out"
    );
    assert_eq!(
        run.max_attempts, DEFAULT_MAX_ATTEMPTS,
        "defaults fill the rest"
    );
    assert_eq!(run.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
    assert!(settings.db.ends_with("beta.db"), "{:?}", settings.db);
    assert_eq!(settings.profile.as_deref(), Some("beta"));
    assert!(!settings.db_given);

    let args = ["run"];
    let settings = resolved(FILE, &args).unwrap();
    let run = settings.run(&run_options(parse(&args))).unwrap();
    assert_eq!(
        (run.rate, run.concurrency),
        (3.0, 3),
        "no profile: the top level"
    );
    assert!(settings.db.ends_with("top.db"));

    let args = ["--db", "flag.db", "--profile", "beta", "run"];
    let settings = resolved(FILE, &args).unwrap();
    assert_eq!(settings.db, Path::new("flag.db"), "--db beats the profile");
    assert!(settings.db_given);
}

#[test]
fn a_profile_that_names_a_target_replaces_the_top_levels_target() {
    let args = ["--profile", "beta", "run"];
    let run = resolved(FILE, &args)
        .unwrap()
        .run(&run_options(parse(&args)))
        .unwrap();
    assert_eq!(run.subdomain, None);
    assert_eq!(run.base_url.as_deref(), Some("http://127.0.0.1:8787"));

    let args = ["--profile", "gamma", "run"];
    let run = resolved(FILE, &args)
        .unwrap()
        .run(&run_options(parse(&args)))
        .unwrap();
    assert_eq!(
        run.subdomain.as_deref(),
        Some("acme"),
        "gamma names no target"
    );
    assert_eq!(run.timeout, Duration::from_secs(9));
}

#[test]
fn an_unknown_profile_names_the_ones_that_exist() {
    let error = resolved(FILE, &["--profile", "prod", "status"]).unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with("no profile \"prod\" in "), "{text}");
    assert!(text.ends_with("its profiles are beta, gamma"), "{text}");
    assert!(error.is_usage());

    let error = resolved("rate = 1", &["--profile", "prod", "status"]).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("it has no [profiles.NAME] tables")
    );

    let nested = "[profiles.a]\nrate = 1\n[profiles.a.profiles.b]\nrate = 2\n";
    let error = resolved(nested, &["status"]).unwrap_err();
    assert!(
        error.to_string().contains("profiles do not nest"),
        "{error}"
    );
}

#[test]
fn hint_prefix_carries_only_what_is_not_the_default() {
    let plain = resolved("", &["status"]).unwrap();
    assert_eq!(plain.hint_prefix(), "kapsync");
    let file = "[profiles.'acme corp']\nrate = 1\n";
    let args = ["--db", "nightly.db", "--profile", "acme corp", "status"];
    let mut chosen = resolved(file, &args).unwrap();
    assert_eq!(
        chosen.hint_prefix(),
        "kapsync --db nightly.db --profile 'acme corp'"
    );
    chosen.config_given = Some(PathBuf::from("my settings.toml"));
    assert_eq!(
        chosen.hint_prefix(),
        "kapsync --db nightly.db --config 'my settings.toml' --profile 'acme corp'"
    );
}

#[test]
fn help_shows_the_defaults_the_code_uses() {
    use clap::CommandFactory as _;
    let root = Cli::command();
    let help = |command: &clap::Command, id: &str| {
        let arg = command.get_arguments().find(|a| a.get_id() == id);
        arg.and_then(|a| a.get_help()).map(|h| h.to_string())
    };
    let run = root.find_subcommand("run").unwrap();
    let ingest = root.find_subcommand("ingest").unwrap();
    let simulate = root.find_subcommand("simulate").unwrap();
    for (command, id, default) in [
        (run, "rate", DEFAULT_RATE.to_string()),
        (run, "burst", DEFAULT_BURST.to_string()),
        (run, "concurrency", DEFAULT_CONCURRENCY.to_string()),
        (run, "max_attempts", DEFAULT_MAX_ATTEMPTS.to_string()),
        (run, "timeout", DEFAULT_TIMEOUT_SECS.to_string()),
        (
            ingest,
            "max_record_bytes",
            DEFAULT_MAX_RECORD_BYTES.to_string(),
        ),
        (&root, "db", format!("./{DEFAULT_DB}")),
        (
            &root,
            "config",
            format!("./{DEFAULT_CONFIG_FILE} when it exists"),
        ),
    ] {
        let text = help(command, id).unwrap_or_else(|| panic!("no help for --{id}"));
        assert!(
            text.ends_with(&format!("[default: {default}]")),
            "--{id}: {text}"
        );
    }
    let port = simulate
        .get_arguments()
        .find(|a| a.get_id() == "port")
        .unwrap();
    let shown: Vec<_> = port.get_default_values().iter().collect();
    assert_eq!(shown, [&crate::simulator::DEFAULT_SIM_PORT.to_string()]);
}

#[test]
fn a_file_rate_may_be_an_integer_or_a_decimal() {
    let file: FileConfig = toml::from_str("rate = 5").unwrap();
    assert_eq!(file.rate, Some(5.0));
    let file: FileConfig =
        toml::from_str("rate = 0.5\nunreachable_timeout = \"1m\"\ncanary = 0").unwrap();
    assert_eq!(file.rate, Some(0.5));
    assert_eq!(file.unreachable_timeout.as_deref(), Some("1m"));
    assert_eq!(file.canary, Some(0));
    let args = [
        "run",
        "--rate",
        "0.5",
        "--canary",
        "0",
        "--unreachable-timeout",
        "90s",
    ];
    let run = resolved("", &args)
        .unwrap()
        .run(&run_options(parse(&args)))
        .unwrap();
    assert_eq!(
        (run.rate, run.canary, run.unreachable_timeout),
        (0.5, 0, Duration::from_secs(90))
    );
}

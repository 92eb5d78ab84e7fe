//! Command-line definitions (clap derive) and nothing else: parsing, not behaviour.
//!
//! Every setting that kapsync.toml or the environment can also give is an `Option` here, so
//! "not given" stays distinct from "given the default" when the layers are merged in
//! [`crate::config`].

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};

use crate::engine::{DEFAULT_BURST, DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, DEFAULT_RATE};
use crate::ingest::{DEFAULT_MAX_RECORD_BYTES, InputFormat};
use crate::kapture::DEFAULT_TIMEOUT_SECS;
use crate::logging::LogFormat;
use crate::simulator::{
    DEFAULT_HANG_FOR, DEFAULT_SIM_BIND, DEFAULT_SIM_PORT, DEFAULT_SUB_STATUSES,
};
use crate::store::DEFAULT_DB;

/// Text shown after `--help`: the exit codes are part of the contract.
const AFTER_HELP: &str = "\
Exit codes:
  0  all rows done and succeeded (or nothing to do)
  1  finished, but some rows failed or were invalid
  2  usage or configuration error, including a wrong target (404/405/501, a host that does
     not resolve) and a canary that every row fails
  3  halted: the API key is invalid, expired or lacks permission
  4  stopped early (Ctrl-C, SIGTERM, --max-duration) with work left; run again to resume
  5  internal error (database, I/O)
  6  Kapture could not be reached for --unreachable-timeout: nothing was sent, run again to
     resume

The API token is read from the KAPTURE_TOKEN environment variable or from --token-file,
never from a flag value.";

/// `--version`'s long form: the version, the commit and the build date (stamped by build.rs).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("KAPSYNC_COMMIT"),
    "\nbuilt:  ",
    env!("KAPSYNC_BUILD_DATE"),
);

/// Moves ticket updates from CSV and JSONL files into Kapture CRM, durably.
///
/// Rows are ingested into a SQLite job table, drained through a rate-limited pool of workers
/// with backoff, and every outcome and attempt is recorded. Re-running a command resumes it.
#[derive(Debug, Parser)]
#[command(
    name = "kapsync",
    version,
    long_version = LONG_VERSION,
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments like `Cli::parse`, and also notes whether `--db` was
    /// typed on the command line rather than taken from `KAPSYNC_DB`.
    pub fn parse_args() -> Self {
        let matches = Self::command().get_matches();
        let mut cli = Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        cli.global.db_on_command_line =
            matches.value_source("db") == Some(ValueSource::CommandLine);
        cli
    }
}

/// Flags accepted by every subcommand, listed apart from each command's own in `--help`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    #[arg(long, global = true, value_name = "PATH", env = "KAPSYNC_DB",
        help = with_default("SQLite database holding runs, rows and attempts", format!("./{DEFAULT_DB}")))]
    pub db: Option<PathBuf>,

    /// Whether `--db` itself was given (not `KAPSYNC_DB`): set by [`Cli::parse_args`].
    #[arg(skip)]
    pub db_on_command_line: bool,

    /// Settings file [default: ./kapsync.toml when it exists]
    #[arg(long, global = true, value_name = "PATH", env = "KAPSYNC_CONFIG")]
    pub config: Option<PathBuf>,

    /// Settings profile: the [profiles.NAME] table of the settings file, laid over its top level
    #[arg(long, global = true, value_name = "NAME", env = "KAPSYNC_PROFILE")]
    pub profile: Option<String>,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less log output (-q warnings only, -qq errors only)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,

    /// Log line format on stderr
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Never draw progress bars or progress lines
    #[arg(long, global = true)]
    pub no_progress: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read CSV or JSONL files into a run's job table, validating every row
    Ingest(IngestArgs),
    /// Send a run's pending rows to Kapture
    Run(RunArgs),
    /// Ingest files, then run: the one command for cron
    Sync(SyncArgs),
    /// Counts per state for a run (default: the latest)
    Status(StatusArgs),
    /// List runs with their counts
    Runs(JsonArg),
    /// Put failed rows back to pending so the next `run` sends them again
    Retry(RetryArgs),
    /// Mark failed or pending rows `skipped`: rows a person decides not to send
    Skip(SkipArgs),
    /// Write rows (with their errors) as CSV or JSONL
    Export(ExportArgs),
    /// Write a migration report: one HTML page with charts, or its data as JSON
    Report(ReportArgs),
    /// Serve a local Kapture stand-in to rehearse a migration against
    Simulate(SimulateArgs),
    /// Sync the built-in sample data into a local simulator and show the result
    Demo(DemoArgs),
    /// Mapping files: `mapping init FILE` proposes one from a CSV or JSONL sample
    #[command(subcommand)]
    Mapping(MappingCommand),
    /// Write the built-in sample exports and their mapping files into a directory
    Samples(SamplesArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish)
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `kapsync man | man -l -`
    Man,
}

impl Command {
    /// Whether the command hosts an HTTP server (the simulator).
    pub fn serves_http(&self) -> bool {
        matches!(self, Command::Simulate(_) | Command::Demo(_))
    }
}

/// `--json` alone.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Flags shared by `ingest` and `sync`.
#[derive(Debug, Args)]
pub struct IngestOptions {
    /// Files to read; `-` reads standard input
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Input format [default: from the extension: .csv, .jsonl, .ndjson]
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,

    /// Mapping file (TOML): source columns to Kapture fields, value maps, defaults, extra keys
    #[arg(long, value_name = "FILE", env = "KAPSYNC_MAPPING")]
    pub mapping: Option<PathBuf>,

    #[arg(long, value_name = "BYTES", env = "KAPSYNC_MAX_RECORD_BYTES",
        help = with_default("Largest accepted record in bytes; larger ones are stored as invalid", DEFAULT_MAX_RECORD_BYTES))]
    pub max_record_bytes: Option<u64>,

    /// Store every valid row as pending, even one equal to what its ticket (sync key) last
    /// sent; by default such rows are stored `skipped` ("unchanged since run R, line L")
    #[arg(long)]
    pub resend_unchanged: bool,

    /// When a newer row of a ticket (sync key) arrives, skip that key's older pending rows
    /// ("superseded by run R, line L"); also `[delta] supersede = true` in the mapping
    #[arg(long)]
    pub supersede: bool,

    /// CSV field delimiter: , ; tab or | [default: found on the header line]
    #[arg(long, value_name = "CHAR", value_parser = crate::ingest::delimiter::parse)]
    pub delimiter: Option<u8>,

    /// Text encoding: utf-8, windows-1252, iso-8859-1, utf-16le, utf-16be or another WHATWG
    /// label [default: utf-8, or UTF-16 when the file starts with its byte order mark]
    #[arg(long, value_name = "LABEL")]
    pub encoding: Option<String>,

    /// Comma-separated sub_status values Kapture accepts; others are stored as invalid
    /// (overrides the mapping's [allowed] sub_status)
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub sub_statuses: Option<Vec<String>>,

    /// Add to a run whose files were ingested with another mapping file (or none)
    #[arg(long)]
    pub mapping_changed: bool,
}

/// `kapsync ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub input: IngestOptions,

    /// Run to add the rows to (created if missing) [default: a new run named from the time]
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,

    /// Print the summary as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Flags shared by `run` and `sync`.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// Kapture subdomain: sends to https://NAME.kapturecrm.com
    #[arg(long, value_name = "NAME", env = "KAPSYNC_SUBDOMAIN")]
    pub subdomain: Option<String>,

    /// Base URL instead of the subdomain (a simulator, a proxy); plain http only to loopback
    #[arg(
        long,
        value_name = "URL",
        env = "KAPSYNC_BASE_URL",
        conflicts_with = "subdomain"
    )]
    pub base_url: Option<String>,

    /// File whose first line is the API token (instead of KAPTURE_TOKEN)
    #[arg(long, value_name = "PATH", env = "KAPSYNC_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Send through this proxy (http://HOST:PORT) instead of the one HTTPS_PROXY/ALL_PROXY
    /// name; a loopback target never goes through a proxy
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,

    #[arg(long, value_name = "N", env = "KAPSYNC_RATE", value_parser = parse_rate,
        help = with_default("Requests per second, decimals allowed (0.5: one every 2 s), 0 for no limit", DEFAULT_RATE))]
    pub rate: Option<f64>,

    #[arg(long, value_name = "N", env = "KAPSYNC_BURST",
        help = with_default("Requests allowed at once above the rate", DEFAULT_BURST))]
    pub burst: Option<u32>,

    #[arg(long, value_name = "N", env = "KAPSYNC_CONCURRENCY",
        help = with_default("Requests in flight at most", DEFAULT_CONCURRENCY))]
    pub concurrency: Option<u32>,

    #[arg(long, value_name = "N", env = "KAPSYNC_MAX_ATTEMPTS",
        help = with_default("Attempts per row before it is failed", DEFAULT_MAX_ATTEMPTS))]
    pub max_attempts: Option<u32>,

    #[arg(long, value_name = "SECS", env = "KAPSYNC_TIMEOUT",
        help = with_default("Seconds a request may take in all", DEFAULT_TIMEOUT_SECS))]
    pub timeout: Option<u64>,

    /// Stop gracefully after this long, e.g. 6h or 90m (for nightly windows)
    #[arg(long, value_name = "DURATION", env = "KAPSYNC_MAX_DURATION", value_parser = parse_duration)]
    pub max_duration: Option<std::time::Duration>,

    /// Stop (exit 6, rows kept pending) when Kapture cannot be reached for this long, e.g. 10m
    /// [default: 10m]
    #[arg(long, value_name = "DURATION", env = "KAPSYNC_UNREACHABLE_TIMEOUT", value_parser = parse_duration)]
    pub unreachable_timeout: Option<std::time::Duration>,

    /// Stop (exit 2, rows kept pending) when the first N answers, or the last N, are all
    /// rejections with one message: a mapping error, not N bad rows. 0 turns it off
    /// [default: 20]
    #[arg(long, value_name = "N", env = "KAPSYNC_CANARY")]
    pub canary: Option<u32>,

    /// Send and store nothing: check the target and the token, show the first rows as they
    /// would be sent, the count and the estimated time
    #[arg(long)]
    pub dry_run: bool,

    /// Move the database to the given --subdomain/--base-url (a database belongs to the first
    /// Kapture it sends to; the move is recorded)
    #[arg(long)]
    pub retarget: bool,

    /// Keep Kapture's whole ticket snapshot of every success, not only what confirms the
    /// update (ticket id, status, sub status, queue and the message)
    #[arg(long)]
    pub keep_responses: bool,
}

/// `kapsync run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Drain only this run [default: every run, oldest first]
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,

    #[command(flatten)]
    pub options: RunOptions,

    /// Print the summary as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// `kapsync sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub input: IngestOptions,

    /// Run to add the rows to and drain [default: a new run named from the time]
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,

    #[command(flatten)]
    pub options: RunOptions,

    /// Print the summaries as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// `kapsync status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Run to report on [default: the latest]
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,

    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// `kapsync retry`: the rows' attempt counts restart at 0; their attempt history is kept.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Run whose failed rows to retry [default: the latest]
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,

    /// Only rows whose last error has this class: rejected, transient, transient_in_doubt
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,

    /// Only rows whose last error message contains this text (case-sensitive, no wildcards)
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,

    /// Also retry failed rows whose ticket has a later row that succeeded or is on its way
    /// (by default they are left out: sending them would put an older update over a newer one)
    #[arg(long)]
    pub include_superseded: bool,

    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// `kapsync skip`: failed or pending rows become `skipped`, with a reason; nothing is sent.
#[derive(Debug, Args)]
pub struct SkipArgs {
    /// Run whose rows to skip [default: the latest]
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,

    /// Only rows whose last error has this class: rejected, transient, transient_in_doubt,
    /// auth, forbidden, throttled, invalid
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,

    /// Only rows whose last error message contains this text (case-sensitive, no wildcards)
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,

    /// Why the rows are not sent, kept on each row [default: "skipped by kapsync skip"]
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Export file kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values, formulas defused; extra keys in `extra.KEY` columns, so a
    /// fixed export of failures can be ingested again without a mapping
    Csv,
    /// One JSON object per line
    Jsonl,
}

/// `kapsync export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run to export [default: the latest]
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,

    /// Only rows in this state (pending, in_flight, succeeded, failed, invalid, skipped)
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,

    /// Only rows whose last error message (an invalid row's reason) contains this text
    /// (case-sensitive, no wildcards), as `retry --grep` and `skip --grep` take it
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,

    /// Output format
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,

    /// Write to this file instead of standard output: written readable by its owner only
    /// (exports hold customer data) and renamed into place when complete
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Replace the --output file when it exists (a link there is replaced, not followed)
    #[arg(long, requires = "output")]
    pub force: bool,
}

/// `kapsync report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run to report on [default: the latest]
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    pub run: Option<String>,

    /// Report on every run of the database, one point per night
    #[arg(long)]
    pub all: bool,

    /// Write the page to this file instead of standard output (a new file is readable by its
    /// owner only: the report quotes tickets and error messages)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Print the report's data (the same series) as one JSON object instead of HTML
    #[arg(long)]
    pub json: bool,
}

/// `kapsync simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Port to listen on (0 picks a free one)
    #[arg(long, default_value_t = DEFAULT_SIM_PORT)]
    pub port: u16,

    /// Address to bind; any other than loopback needs a token (KAPTURE_TOKEN or --token-file)
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_SIM_BIND)]
    pub bind: std::net::IpAddr,

    /// File whose first line is the token the simulator expects (or KAPTURE_TOKEN); with
    /// neither it accepts any token, on loopback only
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Removed: a token on the command line is visible to every user in `ps`
    #[arg(long, value_name = "TOKEN", hide = true)]
    pub token: Option<String>,

    /// Accepted sub_status keys, comma-separated
    #[arg(long, value_name = "KEYS", default_value = DEFAULT_SUB_STATUSES)]
    pub sub_statuses: String,

    /// Seed for fault injection, so runs repeat
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Share of requests (0 to 1) answered 500/502/503 with an HTML body
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub fail_rate: f64,

    /// Share of requests (0 to 1) answered 429 with Retry-After
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub throttle_rate: f64,

    /// Requests per second served before answering 429 (0: no limit)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub rate_limit: u32,

    /// Added latency: fixed (20ms) or a range (5ms..200ms)
    #[arg(long, value_name = "DURATION")]
    pub latency: Option<String>,

    #[arg(long, value_name = "P", default_value_t = 0.0,
        help = format!("Share of requests (0 to 1) answered only after {}, to test timeouts",
            humantime::format_duration(DEFAULT_HANG_FOR)))]
    pub hang_rate: f64,

    /// Share of requests (0 to 1) whose connection is closed without a reply
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub drop_rate: f64,

    /// Answer "Invalid Auth Key" to every request after the first N
    #[arg(long, value_name = "N")]
    pub auth_fail_after: Option<u64>,

    /// Answer each success with a whole ticket like Kapture's success example (about 2 KB)
    #[arg(long)]
    pub full_tickets: bool,
}

/// `kapsync demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the summary as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// `kapsync mapping ...`.
#[derive(Debug, Subcommand)]
pub enum MappingCommand {
    /// Propose a mapping file from the header and first 10,000 rows of a CSV export:
    /// delimiter, encoding, columns, the status values to map and the callback time formats
    Init(MappingInitArgs),
}

/// `kapsync mapping init`.
#[derive(Debug, Args)]
pub struct MappingInitArgs {
    /// The CSV or JSONL export to sample (JSONL: .jsonl or .ndjson)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Write the mapping here (refused if the file exists) [default: standard output]
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `kapsync samples`.
#[derive(Debug, Args)]
pub struct SamplesArgs {
    /// Directory to write into (created if missing; existing files are not overwritten)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// A flag's help line ending in its default, taken from the constant the code uses.
fn with_default(text: &str, default: impl std::fmt::Display) -> String {
    format!("{text} [default: {default}]")
}

/// Parses a request rate: a non-negative number of requests per second, decimals allowed.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate: give requests per second, e.g. 5, 0.5 or 0 for no limit"
        )),
    }
}

/// `kapsync completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Parses a human duration such as `6h`, `90m` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 6h, 90m, 45s)"))
}

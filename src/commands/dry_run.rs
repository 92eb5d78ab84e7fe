//! Dry runs: check everything a run would check and show what it would send, changing nothing.
//!
//! `run --dry-run` reads the database; `sync --dry-run` ingests into a scratch copy of it (a
//! `VACUUM INTO` snapshot in a private temporary directory, removed at the end), so the plan
//! is exactly what a real sync would send, delta included, and the real database is untouched.
//! The exit code is the one the real command would give for what can be known without
//! sending: 2 when the target or the token would stop it, else 1 when rows are invalid or
//! failed, else 0.

use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::SyncArgs;
use crate::config::{RunSettings, Settings};
use crate::exit;
use crate::exit::UsageError;
use crate::kapture::{TOKEN_ENV, TargetError, Token, UPDATE_TICKET_PATH};
use crate::report::text;
use crate::store::{JobState, Run, Store};

/// Rows a dry run shows.
const DRY_RUN_ROWS: i64 = 3;

/// What a run would check before sending: the target and the token (never its value).
#[derive(Debug, Serialize)]
pub struct Checks {
    /// The Update Ticket URL requests would go to, when the target is usable.
    pub url: Option<String>,
    /// Why the target cannot be used.
    pub target_error: Option<String>,
    /// Whether a usable token was found.
    pub token_found: bool,
    /// Where the token comes from: `KAPTURE_TOKEN` or the token file.
    pub token_source: String,
    /// Why the token cannot be used.
    pub token_error: Option<String>,
}

impl Checks {
    /// Resolves the target against the database's binding and loads the token exactly as a
    /// run would.
    pub async fn new(
        store: &Store,
        resolved: &RunSettings,
        prefix: &str,
    ) -> anyhow::Result<Checks> {
        let target = match super::target::resolve(store, resolved, prefix).await {
            Ok(destination) => Ok(destination.target),
            Err(e) if e.is::<TargetError>() || e.is::<UsageError>() => Err(e.to_string()),
            Err(e) => return Err(e),
        };
        let token = Token::load(resolved.token_file.as_deref());
        Ok(Checks {
            url: target
                .as_ref()
                .ok()
                .map(|t| format!("{}{UPDATE_TICKET_PATH}", t.base_url())),
            target_error: target.err(),
            token_found: token.is_ok(),
            token_source: match &resolved.token_file {
                Some(path) => format!("token file {}", path.display()),
                None => TOKEN_ENV.to_owned(),
            },
            token_error: token.err().map(|e| e.to_string()),
        })
    }

    /// Whether a real run would get past its checks.
    pub fn pass(&self) -> bool {
        self.target_error.is_none() && self.token_error.is_none()
    }

    fn text(&self) -> String {
        let target = match (&self.url, &self.target_error) {
            (Some(url), _) => format!("  target: {url}\n"),
            (None, Some(error)) => format!("  target: ERROR {error}\n"),
            (None, None) => String::new(),
        };
        let token = match &self.token_error {
            None => format!("  token: found in {} (not shown)\n", self.token_source),
            Some(error) => format!("  token: ERROR {error}\n"),
        };
        format!("{target}{token}")
    }
}

/// What a dry run would send for one run.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub run: String,
    pub pending: i64,
    /// Rows a real run would leave failed or invalid (its exit code would be 1).
    pub failed: i64,
    pub invalid: i64,
    /// The first bodies, as they would be sent.
    pub first: Vec<serde_json::Value>,
    pub estimated_seconds: Option<f64>,
}

/// The plans of the runs that have pending rows.
async fn plans(store: &Store, runs: &[Run], rate: f64) -> anyhow::Result<Vec<Plan>> {
    let mut plans = Vec::new();
    for run in runs {
        let counts = store.counts(run.id).await?;
        if counts.pending == 0 {
            continue;
        }
        let rows = store
            .job_rows(run.id, Some(JobState::Pending), 0, DRY_RUN_ROWS)
            .await?;
        let first = rows
            .iter()
            .filter_map(|r| r.payload.as_deref())
            .map(|p| serde_json::from_str(&format!("[{p}]")))
            .collect::<Result<Vec<_>, _>>()?;
        plans.push(Plan {
            run: run.name.clone(),
            pending: counts.pending,
            failed: counts.failed,
            invalid: counts.invalid,
            first,
            estimated_seconds: (rate > 0.0).then(|| counts.pending as f64 / rate),
        });
    }
    Ok(plans)
}

/// The exit code the real command would give, as far as a dry run can tell.
fn exit_code(checks: &Checks, plans: &[Plan]) -> u8 {
    if !checks.pass() {
        exit::USAGE
    } else if plans.iter().any(|p| p.failed + p.invalid > 0) {
        exit::ROWS_FAILED
    } else {
        exit::OK
    }
}

fn plans_text(checks: &Checks, plans: &[Plan], rate: f64) -> anyhow::Result<String> {
    let mut out = checks.text();
    if plans.is_empty() {
        out.push_str("No run has pending rows.\n");
    }
    let target = checks
        .url
        .as_deref()
        .unwrap_or("(no usable --subdomain or --base-url)");
    for plan in plans {
        out.push_str(&format!(
            "Run {}: {} rows would be sent",
            plan.run, plan.pending
        ));
        match plan.estimated_seconds {
            Some(secs) => out.push_str(&format!(
                ", about {} at {rate} requests/s\n",
                humantime::format_duration(Duration::from_secs(secs.ceil() as u64)),
            )),
            None => out.push_str(" (no rate limit: as fast as Kapture answers)\n"),
        }
        for body in &plan.first {
            out.push_str(&format!(
                "  POST {target}\n  Authorization: Basic [token]\n  {}\n",
                serde_json::to_string(body)?
            ));
        }
    }
    if !checks.pass() {
        out.push_str("A real run would stop before sending anything (exit code 2).\n");
    }
    Ok(out)
}

/// `run --dry-run`: shows what would be sent, without sending or claiming anything.
pub async fn run(
    store: &Store,
    resolved: &RunSettings,
    prefix: &str,
    runs: &[Run],
    json: bool,
) -> anyhow::Result<u8> {
    let checks = Checks::new(store, resolved, prefix).await?;
    let plans = plans(store, runs, resolved.rate).await?;
    if json {
        text::print_json(&serde_json::json!({
            "dry_run": true,
            "checks": checks,
            "runs": plans,
        }))?;
    } else {
        let mut out = String::from("Dry run: nothing is sent.\n");
        out.push_str(&plans_text(&checks, &plans, resolved.rate)?);
        text::print(&out)?;
    }
    Ok(exit_code(&checks, &plans))
}

/// `sync --dry-run`: ingests into a scratch copy of the database and shows what a real sync
/// would send; the real database is neither created nor changed.
pub async fn sync(
    settings: &Settings,
    resolved: &RunSettings,
    args: &SyncArgs,
) -> anyhow::Result<u8> {
    // Hints name the real database, not the scratch copy.
    let prefix = super::hint_prefix(settings);
    let scratch = tempfile::Builder::new()
        .prefix("kapsync-dry-run-")
        .tempdir()
        .context("failed to create a temporary directory for the dry run")?;
    let copy = scratch.path().join("dry-run.db");
    if settings.db.exists() {
        let real = super::open_store(settings).await?;
        real.snapshot_into(&copy).await.with_context(|| {
            format!(
                "failed to copy the database {} for the dry run",
                settings.db.display()
            )
        })?;
        real.close().await;
    }
    let scratch_settings = settings.with_db(copy);
    let store = super::open_store(&scratch_settings).await?;
    let checks = Checks::new(&store, resolved, &prefix).await?;
    let (run, ingested) =
        super::ingest::ingest_into(&store, &scratch_settings, &args.input, args.run.as_deref())
            .await?;
    // As a real sync: the leftovers of earlier runs go first.
    let runs = super::sync_runs(&store, run.clone()).await?;
    let plans = plans(&store, &runs, resolved.rate).await?;
    store.close().await;
    drop(scratch);
    if args.json {
        text::print_json(&serde_json::json!({
            "dry_run": true,
            "ingest": ingested,
            "checks": checks,
            "runs": plans,
        }))?;
    } else {
        let mut out = String::from("Dry run: nothing is stored or sent.\n");
        out.push_str(&ingested.text(&run, &prefix));
        out.push_str(&plans_text(&checks, &plans, resolved.rate)?);
        text::print(&out)?;
    }
    let code = exit_code(&checks, &plans);
    Ok(if code == exit::OK {
        ingested.exit_code()
    } else {
        code
    })
}

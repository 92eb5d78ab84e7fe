//! `kapsync demo`: the built-in sample data synced into an in-process simulator.
//!
//! Everything it needs is embedded in the binary and everything it writes goes to a temporary
//! directory that is removed at the end, so an installed `kapsync demo` works anywhere.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::{DemoArgs, IngestOptions};
use crate::config::{RunSettings, Settings};
use crate::exit;
use crate::ingest::DEFAULT_MAX_RECORD_BYTES;
use crate::kapture::{Client, Target, Token};
use crate::report::text;
use crate::simulator::{Latency, SimConfig, Simulator};
use crate::store::Store;

/// An embedded file: its name and content.
pub(super) type Embedded = (&'static str, &'static str);

/// The sample files, embedded: (file name, content, mapping name and content).
pub(super) const SAMPLES: [(&str, &str, Option<Embedded>); 3] = [
    (
        "zendesk_export.csv",
        include_str!("../../sample_data/zendesk_export.csv"),
        Some((
            "zendesk_mapping.toml",
            include_str!("../../sample_data/zendesk_mapping.toml"),
        )),
    ),
    (
        "freshdesk_export.csv",
        include_str!("../../sample_data/freshdesk_export.csv"),
        Some((
            "freshdesk_mapping.toml",
            include_str!("../../sample_data/freshdesk_mapping.toml"),
        )),
    ),
    (
        "updates.jsonl",
        include_str!("../../sample_data/updates.jsonl"),
        None,
    ),
];

/// The token the demo's client and simulator share; it is not a secret.
const DEMO_TOKEN: &str = "demo-token";

/// Runs `kapsync demo`.
pub async fn run(settings: &Settings, args: DemoArgs) -> anyhow::Result<u8> {
    let dir = tempfile::Builder::new()
        .prefix("kapsync-demo-")
        .tempdir()
        .context("failed to create a temporary directory for the demo")?;
    let sim = Simulator::start(
        SimConfig {
            token: Some(DEMO_TOKEN.to_owned()),
            seed: 7,
            fail_rate: 0.08,
            drop_rate: 0.02,
            latency: Some(Latency::Range(
                Duration::from_millis(5),
                Duration::from_millis(60),
            )),
            ..SimConfig::default()
        },
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    )
    .await
    .context("failed to start the demo simulator")?;
    let base_url = sim.base_url();
    let settings = settings.with_db(dir.path().join("demo.db"));
    let store = Store::open(&settings.db).await?;
    let mut ingested = Vec::new();
    let mut run = None;
    for (name, content, mapping) in SAMPLES {
        let path = write(dir.path(), name, content)?;
        let mapping = mapping
            .map(|(name, content)| write(dir.path(), name, content))
            .transpose()?;
        let input = IngestOptions {
            files: vec![path],
            format: None,
            mapping,
            max_record_bytes: Some(DEFAULT_MAX_RECORD_BYTES),
            resend_unchanged: false,
            supersede: false,
            delimiter: None,
            encoding: None,
            sub_statuses: None,
            // The samples come with mappings of their own, into one run on purpose.
            mapping_changed: true,
        };
        let (r, report) =
            super::ingest::ingest_into(&store, &settings, &input, Some("demo")).await?;
        if !args.json {
            text::print(&report.text(&r, "kapsync"))?;
        }
        ingested.push(report);
        run = Some(r);
    }
    let run = run.context("the demo has no sample data")?;
    let resolved = RunSettings {
        subdomain: None,
        base_url: Some(base_url.clone()),
        target_origin: "the demo".to_owned(),
        proxy: None,
        token_file: None,
        rate: 40.0,
        burst: 4,
        concurrency: 8,
        max_attempts: 8,
        timeout: Duration::from_secs(5),
        max_duration: None,
        unreachable_timeout: crate::engine::DEFAULT_UNREACHABLE_TIMEOUT,
        canary: crate::engine::DEFAULT_CANARY,
        dry_run: false,
        retarget: false,
        keep_responses: false,
    };
    let client = Client::new(
        Target::resolve(None, Some(&base_url))?,
        Token::new(DEMO_TOKEN)?,
        resolved.timeout,
    )?;
    if !args.json {
        text::print(&format!(
            "\nSending to a local Kapture simulator at {base_url} (8% server errors, 2% dropped \
             connections, 5-60 ms latency), 40 requests/s...\n"
        ))?;
    }
    let reports =
        super::run::drain_runs(&store, &settings, &resolved, &client, &[run], None).await?;
    let stats = sim.stats();
    sim.shutdown().await;
    store.close().await;
    if args.json {
        text::print_json(&serde_json::json!({
            "ingest": ingested,
            "runs": reports,
            "simulator": stats,
        }))?;
    } else {
        text::print(&text::drain_summary(&reports, &[], &text::Hints::default()))?;
        text::print(&format!(
            "The simulator received {} requests and applied {} updates to {} tickets.\n\n{NEXT_STEPS}",
            stats.requests, stats.succeeded, stats.tickets
        ))?;
    }
    drop(dir);
    Ok(demo_exit_code(&reports))
}

/// The exit code of the demo: a real run's, except that the sample data's invalid rows are
/// there on purpose (to show how they are reported) and so are the demo working, not a
/// failure. A row that failed or was left open still makes it exit 1, so a broken build
/// cannot pass `kapsync demo` as a smoke test.
fn demo_exit_code(reports: &[crate::engine::DrainReport]) -> u8 {
    let code = super::run::exit_code(reports, &[]);
    let only_invalid = reports
        .iter()
        .all(|r| r.counts.failed + r.counts.pending + r.counts.in_flight == 0);
    if code == exit::ROWS_FAILED && only_invalid {
        exit::OK
    } else {
        code
    }
}

const NEXT_STEPS: &str = "\
What to try next:
  kapsync simulate --fail-rate 0.1 --rate-limit 20      a local Kapture to rehearse against
  kapsync ingest export.csv --mapping mapping.toml      load your own export (see sample_data/)
  kapsync run --base-url http://127.0.0.1:8787 --dry-run   see exactly what would be sent
  KAPTURE_TOKEN=... kapsync sync export.csv --subdomain acme --mapping mapping.toml
  kapsync status / kapsync export --state failed / kapsync retry
";

fn write(dir: &std::path::Path, name: &str, content: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, content)
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

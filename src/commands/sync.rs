//! `kapsync sync`: ingest files into a run, then drain it. The one command for cron.

use crate::cli::SyncArgs;
use crate::config::Settings;
use crate::exit;
use crate::report::text;

/// Runs `kapsync sync`.
pub async fn run(settings: &Settings, args: SyncArgs) -> anyhow::Result<u8> {
    // Settings and target are checked before anything is ingested, so a typo costs nothing.
    let resolved = settings.run(&args.options)?;
    if resolved.dry_run {
        return super::dry_run::sync(settings, &resolved, &args).await;
    }
    let hints = super::run::hints(settings, &resolved);
    let store = super::open_store(settings).await?;
    let checked = async {
        let destination = super::target::resolve(&store, &resolved, &hints.prefix).await?;
        let client = super::run::client_for(destination.target.clone(), &resolved)?;
        anyhow::Ok((client, destination))
    }
    .await;
    let (client, destination) = match checked {
        Ok(sender) => sender,
        Err(error) => {
            store.close().await;
            return Err(error);
        }
    };
    let (run, ingested) =
        super::ingest::ingest_into(&store, settings, &args.input, args.run.as_deref()).await?;
    if !args.json {
        text::print(&ingested.text(&run, &hints.prefix))?;
    }
    // The leftovers of earlier runs go with the new one, oldest first: a stopped night's rows
    // can never land after a newer night's rows of the same ticket.
    let runs = super::sync_runs(&store, run).await?;
    let reports = super::run::drain_runs(
        &store,
        settings,
        &resolved,
        &client,
        &runs,
        Some(&destination),
    )
    .await?;
    let resolved_failures = super::run::resolved_failures(&store, &reports).await?;
    if args.json {
        text::print_json(&serde_json::json!({ "ingest": ingested, "runs": reports }))?;
    } else {
        text::print(&text::drain_summary(&reports, &resolved_failures, &hints))?;
    }
    store.close().await;
    let code = super::run::exit_code(&reports, &resolved_failures);
    Ok(if code == exit::OK {
        ingested.exit_code()
    } else {
        code
    })
}

//! The migration report as data: where it stands, what happened over time, what went wrong,
//! what it ran with. `report --json` prints it; the HTML page draws it.

use serde::Serialize;

use super::hints::{self, Group};
use super::timeline;
pub use super::timeline::{Bucket, ClassCounts, Eta, Timeline};
use crate::store::{
    Counts, DrainSession, JobState, MappingUse, Run, RunSet, Store, StoreError, now_ms,
};

/// Message groups shown per kind of problem.
pub const TOP_MESSAGES: i64 = 10;

/// What the report covers and how its hints are spelled.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The runs, oldest first.
    pub runs: Vec<Run>,
    /// Every run of the database (`--all`) rather than one.
    pub all: bool,
    /// How the commands the report prints start (`kapsync` and the `--db`, `--config` and
    /// `--profile` that are not the defaults), so they work when pasted.
    pub prefix: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kapsync_version: &'static str,
    /// Unix milliseconds.
    pub generated_at: i64,
    /// "run" or "all".
    pub scope: &'static str,
    pub runs: Vec<RunStanding>,
    pub total: Standing,
    /// Time to drain what is open at the recent rate, when there is a recent rate.
    pub eta: Option<Eta>,
    pub timeline: Option<Timeline>,
    pub problems: Problems,
    pub settings: Vec<RunSettings>,
}

/// Rows by state, with failures split into open and resolved.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Standing {
    pub counts: Counts,
    pub total: i64,
    pub failed_open: i64,
    pub failed_resolved: i64,
}

/// One run's standing.
#[derive(Debug, Clone, Serialize)]
pub struct RunStanding {
    pub run: String,
    pub created_at: String,
    #[serde(flatten)]
    pub standing: Standing,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Problems {
    /// Requests per class over the whole span.
    pub requests: ClassCounts,
    /// Failed rows per error class.
    pub failed_classes: Vec<(String, i64)>,
    /// The most frequent failure messages, with example rows and the commands that export
    /// each.
    pub failed_messages: Vec<Group>,
    /// Invalid rows grouped by reason, with example rows and the commands that export each.
    pub invalid_reasons: Vec<Group>,
    /// Commands that export the failed rows, one per run that has any.
    pub export_failed: Vec<String>,
    /// Commands that export the invalid rows, one per run that has any.
    pub export_invalid: Vec<String>,
}

/// What one run ran with.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    pub run: String,
    pub drains: Vec<DrainSession>,
    pub mappings: Vec<MappingUse>,
}

/// Builds the report, reading each series once.
pub async fn build(store: &Store, scope: &Scope) -> Result<Report, StoreError> {
    let set = RunSet::new(scope.runs.iter().map(|r| r.id));
    let counts = store.counts_by_run(&set).await?;
    let failures = store.failures(&set).await?;
    let mut total = Standing::default();
    let mut runs = Vec::new();
    for run in &scope.runs {
        let mut standing = Standing::default();
        if let Some((_, c)) = counts.iter().find(|(id, _)| *id == run.id) {
            standing.counts = *c;
        }
        standing.total = standing.counts.total();
        if let Some(f) = failures.iter().find(|f| f.run_id == run.id) {
            standing.failed_open = f.open;
            standing.failed_resolved = f.resolved;
        }
        for state in JobState::ALL {
            total.counts.add(state, standing.counts.get(state));
        }
        total.failed_open += standing.failed_open;
        total.failed_resolved += standing.failed_resolved;
        runs.push(RunStanding {
            run: run.name.clone(),
            created_at: run.created_at.clone(),
            standing,
        });
    }
    total.total = total.counts.total();

    let sessions = store.drain_sessions(&set).await?;
    let timeline = timeline::read(store, scope.all, &set, &sessions).await?;
    let eta = timeline
        .as_ref()
        .and_then(|t| timeline::eta(t, &total.counts));
    let mut requests = ClassCounts::default();
    for b in timeline.iter().flat_map(|t| &t.buckets) {
        requests.merge(&b.requests);
    }
    let in_state = |state: JobState| -> Vec<(&str, i64)> {
        runs.iter()
            .map(|r| (r.run.as_str(), r.standing.counts.get(state)))
            .collect()
    };
    let problems = Problems {
        requests,
        failed_classes: store.classes(&set, JobState::Failed).await?,
        failed_messages: groups(store, scope, &set, JobState::Failed).await?,
        invalid_reasons: groups(store, scope, &set, JobState::Invalid).await?,
        export_failed: hints::export_commands(
            &scope.prefix,
            &in_state(JobState::Failed),
            JobState::Failed,
        ),
        export_invalid: hints::export_commands(
            &scope.prefix,
            &in_state(JobState::Invalid),
            JobState::Invalid,
        ),
    };
    let mappings = store.mappings_used(&set).await?;
    let settings = scope
        .runs
        .iter()
        .map(|run| RunSettings {
            run: run.name.clone(),
            drains: sessions
                .iter()
                .filter(|s| s.run_id == run.id)
                .cloned()
                .collect(),
            mappings: mappings
                .iter()
                .filter(|m| m.run_id == run.id)
                .cloned()
                .collect(),
        })
        .collect();
    Ok(Report {
        kapsync_version: env!("CARGO_PKG_VERSION"),
        generated_at: now_ms(),
        scope: if scope.all { "all" } else { "run" },
        runs,
        total,
        eta,
        timeline,
        problems,
        settings,
    })
}

/// The most frequent messages of the rows in `state`, each with the commands that export it.
async fn groups(
    store: &Store,
    scope: &Scope,
    set: &RunSet,
    state: JobState,
) -> Result<Vec<Group>, StoreError> {
    let top = store.top_messages(set, state, TOP_MESSAGES).await?;
    let found = if top.is_empty() {
        Vec::new()
    } else {
        store.grep_matches(set, state, &top).await?
    };
    Ok(hints::groups(
        &scope.prefix,
        &scope.runs,
        state,
        top,
        &found,
    ))
}

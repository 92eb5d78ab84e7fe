//! The migration report as data: where it stands, what happened over time, what went wrong,
//! what it ran with. `report --json` prints it; the HTML page draws it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::hints::{self, Group};
use crate::store::{
    Buckets, CLASSES, Counts, DrainSession, JobState, MappingUse, Run, RunSet, Store, StoreError,
    now_ms,
};

/// Message groups shown per kind of problem.
pub const TOP_MESSAGES: i64 = 10;
/// Most buckets a run's timeline is cut into; the bucket widens until the span fits.
const MAX_BUCKETS: i64 = 240;
/// Bucket widths tried for one run's timeline, in seconds.
const WIDTHS: [i64; 6] = [60, 300, 900, 3_600, 21_600, 86_400];
const DAY_MS: i64 = 86_400_000;
/// A night runs noon to noon UTC, so a nightly window around midnight in most time zones
/// falls in one point.
const NIGHT_OFFSET_MS: i64 = DAY_MS / 2;
/// Requests whose duration is read at most, spread evenly: percentiles of a month of
/// attempts from a fixed-size sample.
const LATENCY_SAMPLE: i64 = 200_000;
/// How far back the recent rate behind the ETA looks, in seconds of draining.
const RECENT_SECS: f64 = 3_600.0;

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

/// The drain time the open rows still need.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Eta {
    /// Rows pending or in flight.
    pub open_rows: i64,
    /// Rows finished per second over the last hour of draining.
    pub rows_per_second: f64,
    pub seconds: f64,
}

/// The series over time, one entry per bucket.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// "minute", "hour", "night", ... : what one bucket is.
    pub bucket: String,
    pub bucket_seconds: i64,
    /// Percentiles come from every n-th request (1: all), so a month stays fast.
    pub latency_sampled_every: i64,
    pub buckets: Vec<Bucket>,
}

/// Requests per class: the attempts table's `class`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    pub success: i64,
    pub rejected: i64,
    pub transient: i64,
    pub transient_in_doubt: i64,
    pub throttled: i64,
    pub auth: i64,
    pub forbidden: i64,
    pub other: i64,
}

impl ClassCounts {
    fn add(&mut self, class: &str, n: i64) {
        let slot = match class {
            "success" => &mut self.success,
            "rejected" => &mut self.rejected,
            "transient" => &mut self.transient,
            "transient_in_doubt" => &mut self.transient_in_doubt,
            "throttled" => &mut self.throttled,
            "auth" => &mut self.auth,
            "forbidden" => &mut self.forbidden,
            _ => &mut self.other,
        };
        *slot += n;
    }

    /// Every request.
    pub fn total(&self) -> i64 {
        self.success
            + self.rejected
            + self.transient
            + self.transient_in_doubt
            + self.throttled
            + self.auth
            + self.forbidden
            + self.other
    }

    /// Requests answered with a halt (auth or forbidden).
    pub fn halts(&self) -> i64 {
        self.auth + self.forbidden
    }

    fn merge(&mut self, other: &ClassCounts) {
        self.success += other.success;
        self.rejected += other.rejected;
        self.transient += other.transient;
        self.transient_in_doubt += other.transient_in_doubt;
        self.throttled += other.throttled;
        self.auth += other.auth;
        self.forbidden += other.forbidden;
        self.other += other.other;
    }
}

/// One time bucket.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Unix milliseconds.
    pub start: i64,
    /// Rows that succeeded in this bucket (successful requests).
    pub succeeded: i64,
    /// Rows now failed whose last outcome fell in this bucket.
    pub failed: i64,
    pub requests: ClassCounts,
    /// Seconds of this bucket a drain was running (the whole bucket when unknown).
    pub active_seconds: f64,
    /// Requests per second while draining.
    pub requests_per_second: f64,
    /// The configured rate in force (None: no limit or unknown).
    pub rate_limit: Option<f64>,
    /// Request duration percentiles in milliseconds (10% bins), over every request.
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub p99_ms: Option<i64>,
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
    let timeline = timeline(store, scope, &set, &sessions).await?;
    let eta = timeline.as_ref().and_then(|t| eta(t, &total.counts));
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

/// The time window and buckets of the report: the recorded drains' span (tightened to the
/// attempts actually stored), or every attempt's when no drain was recorded.
fn buckets_for(
    scope: &Scope,
    sessions: &[DrainSession],
    span: (i64, i64),
) -> Option<(Buckets, String)> {
    let now = now_ms();
    let (mut from, mut to) = span;
    if !sessions.is_empty() && !scope.all {
        from = from.max(sessions.iter().map(|s| s.started_at).min()?);
        to = to.min(
            sessions
                .iter()
                .map(|s| s.finished_at.unwrap_or(now))
                .max()?,
        );
    }
    if from > to {
        return None;
    }
    let length = to - from;
    if scope.all && length >= 2 * DAY_MS {
        let origin = (from - NIGHT_OFFSET_MS).div_euclid(DAY_MS) * DAY_MS + NIGHT_OFFSET_MS;
        let buckets = Buckets {
            from,
            to,
            origin,
            width: DAY_MS,
        };
        return Some((buckets, "night".into()));
    }
    let secs = WIDTHS
        .into_iter()
        .find(|w| length / (w * 1000) < MAX_BUCKETS)
        .unwrap_or(WIDTHS[WIDTHS.len() - 1]);
    let width = secs * 1000;
    let name = match secs {
        60 => "minute".to_owned(),
        3_600 => "hour".to_owned(),
        86_400 => "day".to_owned(),
        s if s < 3_600 => format!("{} minutes", s / 60),
        s => format!("{} hours", s / 3_600),
    };
    let origin = from.div_euclid(width) * width;
    Some((
        Buckets {
            from,
            to,
            origin,
            width,
        },
        name,
    ))
}

async fn timeline(
    store: &Store,
    scope: &Scope,
    set: &RunSet,
    sessions: &[DrainSession],
) -> Result<Option<Timeline>, StoreError> {
    let Some(span) = store.attempt_span().await? else {
        return Ok(None);
    };
    let Some((b, name)) = buckets_for(scope, sessions, span) else {
        return Ok(None);
    };
    // `--all` reads every attempt without joining the jobs: the runs are all of them.
    let filter = (!scope.all).then_some(set);
    let n = ((b.to - b.origin) / b.width + 1).max(1) as usize;
    let bounds = |k: usize| {
        let start = b.origin + k as i64 * b.width;
        (start.max(b.from), (start + b.width).min(b.to + 1))
    };
    let mut classes = Vec::with_capacity(n);
    for k in 0..n {
        let (from, to) = bounds(k);
        let counts = store.attempt_classes(filter, from, to).await?;
        let mut c = ClassCounts::default();
        for (class, count) in CLASSES.iter().zip(counts) {
            c.add(class, count);
        }
        c.other += counts[CLASSES.len()];
        classes.push(c);
    }
    let requests: i64 = classes.iter().map(ClassCounts::total).sum();
    let sample_every = (requests + LATENCY_SAMPLE - 1) / LATENCY_SAMPLE;
    let mut latency = Vec::with_capacity(n);
    for (k, c) in classes.iter().enumerate() {
        let hist: BTreeMap<i64, i64> = if c.total() == 0 {
            BTreeMap::new()
        } else {
            let (from, to) = bounds(k);
            store
                .latency_bins(filter, from, to, sample_every)
                .await?
                .into_iter()
                .collect()
        };
        latency.push(hist);
    }
    let failed = store
        .settled_by_time(set, JobState::Failed, b.origin, b.width)
        .await?;
    let mut timeline = assemble(b, name, classes, &latency, &failed, sessions);
    timeline.latency_sampled_every = sample_every.max(1);
    Ok(Some(timeline))
}

/// Turns the per-bucket counts into buckets: percentiles, limits, active time.
fn assemble(
    b: Buckets,
    name: String,
    classes: Vec<ClassCounts>,
    latency: &[BTreeMap<i64, i64>],
    failed: &[(i64, i64)],
    sessions: &[DrainSession],
) -> Timeline {
    let n = classes.len();
    let clamp = |k: i64| k.clamp(0, n as i64 - 1) as usize;
    let mut failed_rows = vec![0; n];
    for &(k, count) in failed {
        failed_rows[clamp(k)] += count;
    }
    let width_secs = b.width as f64 / 1000.0;
    let now = now_ms();
    // A drain with no end recorded is running, or its runner died: either way it ran until
    // the last attempt at most.
    let end_of = |s: &DrainSession| s.finished_at.unwrap_or(b.to).min(now);
    let mut buckets: Vec<Bucket> = (0..n)
        .map(|k| {
            let start = b.origin + k as i64 * b.width;
            let end = start + b.width;
            let overlap: i64 = sessions
                .iter()
                .map(|s| (end_of(s).min(end) - s.started_at.max(start)).max(0))
                .sum();
            let active_seconds = if sessions.is_empty() {
                width_secs
            } else {
                (overlap as f64 / 1000.0).min(width_secs)
            };
            let requests = classes[k];
            let limit = sessions
                .iter()
                .rfind(|s| s.started_at < end)
                .and_then(|s| (s.settings.rate > 0.0).then_some(s.settings.rate));
            let hist = &latency[k];
            Bucket {
                start,
                succeeded: requests.success,
                failed: failed_rows[k],
                requests,
                active_seconds,
                requests_per_second: if active_seconds > 0.0 {
                    requests.total() as f64 / active_seconds
                } else {
                    0.0
                },
                rate_limit: limit,
                p50_ms: percentile(hist, 0.50),
                p95_ms: percentile(hist, 0.95),
                p99_ms: percentile(hist, 0.99),
            }
        })
        .collect();
    // Empty buckets at either end carry nothing (a window wider than the attempts).
    let busy = |b: &Bucket| b.requests.total() + b.failed > 0;
    let last = buckets.iter().rposition(busy).map_or(0, |i| i + 1);
    buckets.truncate(last);
    let first = buckets.iter().position(busy).unwrap_or(0);
    buckets.drain(..first);
    Timeline {
        bucket: name,
        bucket_seconds: b.width / 1000,
        latency_sampled_every: 1,
        buckets,
    }
}

/// The `q` quantile of a histogram of duration bins.
fn percentile(hist: &BTreeMap<i64, i64>, q: f64) -> Option<i64> {
    let total: i64 = hist.values().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as i64).max(1);
    let mut seen = 0;
    for (&bin, &count) in hist {
        seen += count;
        if seen >= rank {
            return Some(bin);
        }
    }
    hist.keys().next_back().copied()
}

/// The time the open rows need at the rate of the last hour of draining.
fn eta(timeline: &Timeline, counts: &Counts) -> Option<Eta> {
    let open_rows = counts.pending + counts.in_flight;
    let (mut rows, mut secs) = (0i64, 0.0);
    // The last hour of draining that finished rows (retries alone finish none).
    let last = timeline
        .buckets
        .iter()
        .rposition(|b| b.succeeded + b.failed > 0)?;
    for b in timeline.buckets[..=last].iter().rev() {
        if secs >= RECENT_SECS {
            break;
        }
        rows += b.succeeded + b.failed;
        secs += b.active_seconds;
    }
    (rows > 0 && secs > 0.0 && open_rows > 0).then(|| {
        let rows_per_second = rows as f64 / secs;
        Eta {
            open_rows,
            rows_per_second,
            seconds: open_rows as f64 / rows_per_second,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_bins() {
        let hist: BTreeMap<i64, i64> = [(10, 50), (20, 45), (300, 4), (5000, 1)].into();
        assert_eq!(percentile(&hist, 0.50), Some(10));
        assert_eq!(percentile(&hist, 0.95), Some(20));
        assert_eq!(percentile(&hist, 0.99), Some(300));
        assert_eq!(percentile(&BTreeMap::new(), 0.5), None);
    }

    #[test]
    fn nights_run_noon_to_noon() {
        let scope = Scope {
            runs: Vec::new(),
            all: true,
            prefix: "kapsync".into(),
        };
        let day = 20_000 * DAY_MS;
        let (b, name) = buckets_for(&scope, &[], (day + 22 * 3_600_000, day + 5 * DAY_MS)).unwrap();
        assert_eq!(name, "night");
        assert_eq!(b.origin, day + NIGHT_OFFSET_MS);
        let (b, name) = buckets_for(&scope, &[], (day, day + 3_600_000)).unwrap();
        assert_eq!((b.width, name.as_str()), (60_000, "minute"));
    }
}

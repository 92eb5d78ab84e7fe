//! The report's series over time: the time buckets, and per bucket the requests by class,
//! rows finished, latency percentiles, the limit in force and the time spent draining.

use std::collections::BTreeMap;

use serde::Serialize;

use super::limits;
use crate::store::{
    Buckets, CLASSES, Counts, DrainSession, JobState, LimitChange, RunSet, Store, StoreError,
    now_ms,
};

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

    /// Adds another bucket's counts.
    pub fn merge(&mut self, other: &ClassCounts) {
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
    /// The limit in force while draining, requests per second: the adaptive limit, lowered on
    /// 429 answers and climbing back, weighted by the time each value held in the bucket
    /// (None: no limit, or no drain recorded).
    pub rate_limit: Option<f64>,
    /// The lowest limit in force during the bucket.
    pub rate_limit_min: Option<f64>,
    /// The rate the latest drain begun by the end of the bucket was configured with (None: no
    /// limit or unknown).
    pub configured_rate: Option<f64>,
    /// Request duration percentiles in milliseconds (10% bins), over every request.
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub p99_ms: Option<i64>,
}

/// The time window and buckets of the report: the recorded drains' span (tightened to the
/// attempts actually stored), or every attempt's when no drain was recorded.
fn buckets_for(
    all: bool,
    sessions: &[DrainSession],
    span: (i64, i64),
) -> Option<(Buckets, String)> {
    let now = now_ms();
    let (mut from, mut to) = span;
    if !sessions.is_empty() && !all {
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
    if all && length >= 2 * DAY_MS {
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

/// Reads the series over time of the runs in `set` (every run of the database when `all`),
/// cut into buckets that fit the span; `None` when nothing was sent.
pub async fn read(
    store: &Store,
    all: bool,
    set: &RunSet,
    sessions: &[DrainSession],
) -> Result<Option<Timeline>, StoreError> {
    let Some(span) = store.attempt_span().await? else {
        return Ok(None);
    };
    let Some((b, name)) = buckets_for(all, sessions, span) else {
        return Ok(None);
    };
    // `--all` reads every attempt without joining the jobs: the runs are all of them.
    let filter = (!all).then_some(set);
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
    let changes = store.rate_limits(set).await?;
    let series = Series {
        classes,
        latency: &latency,
        failed: &failed,
    };
    let mut timeline = assemble(b, name, series, sessions, &changes);
    timeline.latency_sampled_every = sample_every.max(1);
    Ok(Some(timeline))
}

/// What the store read per bucket.
struct Series<'a> {
    classes: Vec<ClassCounts>,
    latency: &'a [BTreeMap<i64, i64>],
    /// (bucket, rows now failed).
    failed: &'a [(i64, i64)],
}

/// Turns the per-bucket counts into buckets: percentiles, limits, active time.
fn assemble(
    b: Buckets,
    name: String,
    series: Series<'_>,
    sessions: &[DrainSession],
    changes: &[LimitChange],
) -> Timeline {
    let Series {
        classes,
        latency,
        failed,
    } = series;
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
    let limits = limits::segments(sessions, changes, end_of);
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
            let configured = sessions
                .iter()
                .rfind(|s| s.started_at < end)
                .and_then(|s| (s.settings.rate > 0.0).then_some(s.settings.rate));
            let in_force = limits::in_force(&limits, start, end);
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
                rate_limit: in_force.mean,
                rate_limit_min: in_force.min,
                configured_rate: configured,
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
pub fn eta(timeline: &Timeline, counts: &Counts) -> Option<Eta> {
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
        let day = 20_000 * DAY_MS;
        let (b, name) = buckets_for(true, &[], (day + 22 * 3_600_000, day + 5 * DAY_MS)).unwrap();
        assert_eq!(name, "night");
        assert_eq!(b.origin, day + NIGHT_OFFSET_MS);
        let (b, name) = buckets_for(true, &[], (day, day + 3_600_000)).unwrap();
        assert_eq!((b.width, name.as_str()), (60_000, "minute"));
    }
}

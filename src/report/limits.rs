//! The rate limit in force over time: each drain starts at its configured rate and follows the
//! changes the adaptive limit recorded; per time bucket, its time-weighted mean and its lowest.

use crate::store::{DrainSession, LimitChange};

/// A drain's limit over `[from, to)` (Unix ms); `rate: None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub from: i64,
    pub to: i64,
    pub rate: Option<f64>,
}

/// The limit in force over one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InForce {
    /// Weighted by the time each limit was in force while draining; `None` when no limit was.
    pub mean: Option<f64>,
    /// The lowest limit in force during the bucket.
    pub min: Option<f64>,
}

/// Each drain's limit as segments from its start to `end_of` it: the configured rate (0: no
/// limit) until the first recorded change, then each change until the next. `changes` are
/// sorted by drain and time, as [`crate::store::Store::rate_limits`] returns them.
pub fn segments(
    sessions: &[DrainSession],
    changes: &[LimitChange],
    end_of: impl Fn(&DrainSession) -> i64,
) -> Vec<Segment> {
    let mut out = Vec::new();
    for s in sessions {
        let end = end_of(s);
        let configured = (s.settings.rate > 0.0).then_some(s.settings.rate);
        let mut from = s.started_at;
        let mut rate = configured;
        for c in changes.iter().filter(|c| c.drain_id == s.id) {
            let at = c.at.clamp(s.started_at, end.max(s.started_at));
            if at > from {
                out.push(Segment { from, to: at, rate });
            }
            from = from.max(at);
            rate = c.rate;
        }
        if end > from {
            out.push(Segment {
                from,
                to: end,
                rate,
            });
        }
    }
    out
}

/// The limit in force over `[start, end)`.
pub fn in_force(segments: &[Segment], start: i64, end: i64) -> InForce {
    let (mut weighted, mut time) = (0.0, 0i64);
    let mut min: Option<f64> = None;
    for s in segments {
        let overlap = s.to.min(end) - s.from.max(start);
        let Some(rate) = s.rate.filter(|_| overlap > 0) else {
            continue;
        };
        weighted += rate * overlap as f64;
        time += overlap;
        min = Some(min.map_or(rate, |m| m.min(rate)));
    }
    InForce {
        mean: (time > 0).then(|| weighted / time as f64),
        min,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DrainSettings;

    fn session(id: i64, started_at: i64, finished_at: i64, rate: f64) -> DrainSession {
        DrainSession {
            id,
            run_id: 1,
            started_at,
            finished_at: Some(finished_at),
            settings: DrainSettings {
                target: String::new(),
                rate,
                burst: 1,
                concurrency: 1,
                max_attempts: 1,
                timeout_secs: 1,
                version: String::new(),
            },
        }
    }

    #[test]
    fn the_limit_steps_from_the_configured_rate_through_its_changes() {
        let sessions = [
            session(1, 0, 60_000, 100.0),
            session(2, 120_000, 180_000, 0.0),
        ];
        let change = |drain_id, at, rate| LimitChange { drain_id, at, rate };
        let changes = [
            change(1, 30_000, Some(40.0)),
            change(1, 45_000, Some(44.0)),
            change(2, 150_000, Some(20.0)),
        ];
        let segs = segments(&sessions, &changes, |s| s.finished_at.unwrap());
        let seg = |from, to, rate| Segment { from, to, rate };
        assert_eq!(
            segs,
            [
                seg(0, 30_000, Some(100.0)),
                seg(30_000, 45_000, Some(40.0)),
                seg(45_000, 60_000, Some(44.0)),
                seg(120_000, 150_000, None),
                seg(150_000, 180_000, Some(20.0)),
            ]
        );
        // The first minute: half at 100, a quarter at 40, a quarter at 44.
        let first = in_force(&segs, 0, 60_000);
        assert_eq!(first.mean, Some(71.0));
        assert_eq!(first.min, Some(40.0));
        // Between drains nothing is in force; an unlimited stretch does not count.
        assert_eq!(in_force(&segs, 60_000, 120_000), InForce::default());
        let third = in_force(&segs, 120_000, 180_000);
        assert_eq!((third.mean, third.min), (Some(20.0), Some(20.0)));
    }
}

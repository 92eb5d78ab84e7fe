//! Whether Kapture can be reached: a request that never arrived pauses every worker, and one
//! probe at a time goes out on a backoff schedule until something gets through or
//! `--unreachable-timeout` passes.
//!
//! The probe is an ordinary row: its request goes out when [`Reach::ready`] lets it, and its
//! answer reports back through [`Reach::on_reached`] or [`Reach::on_unreached`]. A row that
//! never arrived is put back without using an attempt, so an outage fails nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::sync::Notify;

use super::events::lock;

/// First wait before a probe.
const PROBE_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between probes.
const PROBE_CAP: Duration = Duration::from_secs(30);

/// The reachability gate every request passes before the rate limiter.
#[derive(Debug)]
pub(super) struct Reach {
    timeout: Duration,
    state: Mutex<ReachState>,
    /// Woken when Kapture is reachable again or a probe may go.
    changed: Notify,
}

#[derive(Debug)]
struct ReachState {
    /// When the first request that did not arrive came back; None while reachable.
    down_since: Option<Instant>,
    /// When the next probe may go.
    probe_at: Instant,
    /// A probe is out: the others wait for its answer.
    probing: bool,
    backoff: ExponentialBackoff,
}

fn schedule() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(PROBE_FIRST)
        .with_max_delay(PROBE_CAP)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

impl Reach {
    /// A gate that gives up after `timeout` without anything getting through.
    pub(super) fn new(timeout: Duration) -> Reach {
        Reach {
            timeout,
            state: Mutex::new(ReachState {
                down_since: None,
                probe_at: Instant::now(),
                probing: false,
                backoff: schedule(),
            }),
            changed: Notify::new(),
        }
    }

    /// Waits until a request may go: at once while Kapture is reachable; while it is not, one
    /// request (the probe) when the backoff allows, the rest after something gets through.
    pub(super) async fn ready(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wake_at = {
                let mut state = lock(&self.state);
                if state.down_since.is_none() {
                    return;
                }
                if !state.probing && Instant::now() >= state.probe_at {
                    state.probing = true;
                    return;
                }
                (!state.probing).then_some(state.probe_at)
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(at.into()) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Something got through (any answer, even one in doubt): every worker goes on.
    pub(super) fn on_reached(&self) {
        let mut state = lock(&self.state);
        if let Some(since) = state.down_since.take() {
            tracing::info!(
                "Kapture is reachable again after {}; resuming",
                humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
            );
            state.backoff = schedule();
            state.probing = false;
            drop(state);
            self.changed.notify_waiters();
        }
    }

    /// A request never arrived. Schedules the next probe; returns how long Kapture has been
    /// unreachable once that is `timeout` or more (the run gives up).
    pub(super) fn on_unreached(&self, why: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let since = match state.down_since {
            Some(since) => since,
            None => {
                tracing::warn!(
                    "Kapture cannot be reached ({why}): pausing every request and trying again \
                     with backoff for up to {}",
                    humantime::format_duration(self.timeout)
                );
                state.down_since = Some(now);
                now
            }
        };
        let down_for = now.duration_since(since);
        if down_for >= self.timeout {
            return Some(down_for);
        }
        let wait = state.backoff.next().unwrap_or(PROBE_CAP);
        // The last probe goes out when the time is up, so the verdict comes on time.
        state.probe_at = (now + wait).min(since + self.timeout);
        state.probing = false;
        drop(state);
        self.changed.notify_waiters();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_probe_at_a_time_until_something_gets_through() {
        let reach = Reach::new(Duration::from_secs(60));
        reach.ready().await; // reachable: at once
        assert_eq!(reach.on_unreached("refused"), None);
        let start = Instant::now();
        reach.ready().await; // the probe, after the first backoff step
        assert!(start.elapsed() <= PROBE_FIRST * 2, "{:?}", start.elapsed());
        // A second request waits for the probe's answer.
        let second = tokio::time::timeout(Duration::from_millis(50), reach.ready()).await;
        assert!(second.is_err(), "only one probe is out");
        reach.on_reached();
        reach.ready().await;
    }

    #[tokio::test]
    async fn it_gives_up_after_the_timeout() {
        let reach = Reach::new(Duration::from_millis(300));
        assert_eq!(reach.on_unreached("dns"), None);
        let mut gave_up = None;
        for _ in 0..10 {
            reach.ready().await;
            if let Some(down) = reach.on_unreached("dns") {
                gave_up = Some(down);
                break;
            }
        }
        assert!(gave_up.unwrap() >= Duration::from_millis(300));
    }
}

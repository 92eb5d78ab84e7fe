//! Policies the drain loop is handed: the retry schedule and the (adaptive) request rate.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// First retry delay before jitter.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const RETRY_CAP: Duration = Duration::from_secs(300);
/// Longest pause a 429 can impose on the whole run.
pub const THROTTLE_CAP: Duration = Duration::from_secs(60);
/// Time without a 429 before the rate climbs one step back toward the target.
pub const QUIET_PERIOD: Duration = Duration::from_secs(5);

/// Exponential backoff with full jitter: attempt n waits a random time below
/// `min(cap, base * 2^(n-1))`. The nominal schedule comes from backon.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: RETRY_BASE,
            cap: RETRY_CAP,
        }
    }
}

impl RetryPolicy {
    /// The nominal (un-jittered) delay after the `attempt`-th failure (1-based).
    pub fn nominal(&self, attempt: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.cap)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .nth(attempt.saturating_sub(1).min(64) as usize)
            .unwrap_or(self.cap)
    }

    /// The delay to wait after the `attempt`-th failure: full jitter over the nominal delay.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.nominal(attempt).mul_f64(fastrand::f64())
    }
}

/// The request rate: a governor limiter at the effective rate, a run-wide pause after a 429,
/// and the climb back toward the configured rate.
///
/// A 429 starts a pause (the server's Retry-After, capped, or the backoff delay) and halves the
/// effective rate, kept between 85% and 90% of what the server accepted over the last two
/// seconds when that is known, so a throttling server is neither hammered nor starved. Answers to requests already in
/// flight when a pause starts belong to the same event and change nothing. After
/// [`QUIET_PERIOD`] without a 429 the rate climbs 10% per period toward the target, but only
/// 2% per period once it is within 10% of the rate the server last accepted.
#[derive(Debug)]
pub struct RateControl {
    target: Option<f64>,
    burst: NonZeroU32,
    throttle_cap: Duration,
    state: Mutex<RateState>,
}

struct RateState {
    effective: Option<f64>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    pause_until: Option<Instant>,
    /// The rate at which the server last throttled: the climb slows down below it.
    ceiling: Option<f64>,
    last_change: Instant,
    /// Non-429 answers of the last two seconds.
    accepted: VecDeque<Instant>,
    throttle_events: u64,
}

impl std::fmt::Debug for RateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateState")
            .field("effective", &self.effective)
            .field("pause_until", &self.pause_until)
            .finish_non_exhaustive()
    }
}

/// How long the accepted-rate window is.
const ACCEPTED_WINDOW: Duration = Duration::from_secs(2);
/// Answers needed in the window before the accepted rate is trusted.
const ACCEPTED_MIN_SAMPLES: usize = 10;

/// Non-429 answers per second over the window, when there are enough of them to tell.
fn accepted_rate(times: &VecDeque<Instant>, now: Instant) -> Option<f64> {
    let recent: Vec<&Instant> = times
        .iter()
        .filter(|t| now.duration_since(**t) <= ACCEPTED_WINDOW)
        .collect();
    let oldest = recent.first()?;
    if recent.len() < ACCEPTED_MIN_SAMPLES {
        return None;
    }
    // At least a second: a burst answered in a fraction of one says little about a limit
    // that servers count per second.
    let span = now.duration_since(**oldest).as_secs_f64().max(1.0);
    Some(recent.len() as f64 / span)
}

/// The rate after a throttle: half the effective rate, kept between 85% and 90% of what the
/// server accepted just before (when that is known), and at least one request a second.
fn cut(effective: Option<f64>, accepted: Option<f64>) -> f64 {
    let halved = effective.or(accepted).map_or(1.0, |r| r / 2.0);
    let rate = match accepted {
        Some(a) => halved.clamp(a * 0.85, a * 0.9),
        None => halved,
    };
    rate.max(1.0)
}

fn limiter(rate: f64, burst: NonZeroU32) -> Arc<DefaultDirectRateLimiter> {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    Arc::new(RateLimiter::direct(quota))
}

impl RateControl {
    /// `rate` requests per second (0: no limit) with `burst` allowed at once.
    pub fn new(rate: u32, burst: u32, throttle_cap: Duration) -> Self {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let target = (rate > 0).then_some(f64::from(rate));
        Self {
            target,
            burst,
            throttle_cap,
            state: Mutex::new(RateState {
                effective: target,
                limiter: target.map(|r| limiter(r, burst)),
                pause_until: None,
                ceiling: None,
                last_change: Instant::now(),
                accepted: VecDeque::new(),
                throttle_events: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request may go out: past any pause, then a limiter cell.
    pub async fn ready(&self) {
        loop {
            let (pause, limiter) = {
                let mut state = self.lock();
                self.maybe_climb(&mut state);
                (state.pause_until, state.limiter.clone())
            };
            if let Some(until) = pause
                && until > Instant::now()
            {
                tokio::time::sleep_until(until.into()).await;
                continue;
            }
            if let Some(limiter) = &limiter {
                limiter.until_ready().await;
            }
            // A pause may have begun while this request waited for its cell, or the rate may
            // have changed: a cell from a replaced limiter does not count, or the old and the
            // new limiter would each let their own stream through.
            let state = self.lock();
            let paused = state.pause_until.is_some_and(|u| u > Instant::now());
            let current = match (&limiter, &state.limiter) {
                (Some(used), Some(now)) => Arc::ptr_eq(used, now),
                (None, None) => true,
                _ => false,
            };
            if !paused && current {
                return;
            }
        }
    }

    /// Notes an answer that was not a 429.
    pub fn on_accepted(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        state.accepted.push_back(now);
        while state
            .accepted
            .front()
            .is_some_and(|t| now.duration_since(*t) > ACCEPTED_WINDOW)
        {
            state.accepted.pop_front();
        }
    }

    /// Notes a 429: starts a pause and cuts the rate, unless a pause is already under way.
    /// Returns how long the row should wait before it is sent again.
    pub fn on_throttled(&self, retry_after: Option<Duration>, backoff: Duration) -> Duration {
        let now = Instant::now();
        let wait = retry_after.unwrap_or(backoff).min(self.throttle_cap);
        let mut state = self.lock();
        if state.pause_until.is_some_and(|u| u > now) {
            return wait;
        }
        state.pause_until = Some(now + wait);
        state.throttle_events += 1;
        let accepted = accepted_rate(&state.accepted, now);
        let rate = cut(state.effective, accepted);
        state.ceiling = accepted.or(state.effective);
        state.effective = Some(rate);
        state.limiter = Some(limiter(rate, self.burst));
        state.last_change = now;
        tracing::info!(
            rate = format!("{rate:.1}"),
            pause_ms = wait.as_millis() as u64,
            "throttled by the server: pausing and slowing down"
        );
        wait
    }

    fn maybe_climb(&self, state: &mut RateState) {
        let Some(current) = state.effective else {
            return;
        };
        if self.target.is_some_and(|t| current >= t) {
            return;
        }
        let now = Instant::now();
        if state.pause_until.is_some_and(|u| u > now)
            || now.duration_since(state.last_change) < QUIET_PERIOD
        {
            return;
        }
        // Quickly back to just under the rate that was throttled, then probe slowly above it,
        // so a server with a fixed limit is used fully without being hit again and again.
        let next = match state.ceiling {
            Some(ceiling) if current < ceiling * 0.9 => (current * 1.1).min(ceiling * 0.9),
            Some(_) => current * 1.02,
            None => (current * 1.1).max(current + 1.0),
        };
        let next = self.target.map_or(next, |t| next.min(t));
        state.effective = Some(next);
        state.limiter = Some(limiter(next, self.burst));
        state.last_change = now;
    }

    /// The effective rate now (None: no limit).
    pub fn effective(&self) -> Option<f64> {
        self.lock().effective
    }

    /// How many throttling events (pauses) there have been.
    pub fn throttle_events(&self) -> u64 {
        self.lock().throttle_events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedule_doubles_to_the_cap_with_full_jitter() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.nominal(1), Duration::from_secs(1));
        assert_eq!(policy.nominal(2), Duration::from_secs(2));
        assert_eq!(policy.nominal(4), Duration::from_secs(8));
        assert_eq!(policy.nominal(20), RETRY_CAP);
        for attempt in 1..12 {
            let d = policy.delay(attempt);
            assert!(d <= policy.nominal(attempt), "{d:?}");
        }
    }

    #[tokio::test]
    async fn a_throttle_pauses_and_halves_once_per_event() {
        let control = RateControl::new(100, 1, THROTTLE_CAP);
        let wait = control.on_throttled(Some(Duration::from_millis(300)), Duration::from_secs(9));
        assert_eq!(wait, Duration::from_millis(300));
        assert_eq!(control.effective(), Some(50.0));
        // Answers to requests already in flight belong to the same event.
        control.on_throttled(None, Duration::from_secs(1));
        assert_eq!(control.effective(), Some(50.0));
        assert_eq!(control.throttle_events(), 1);
        let start = Instant::now();
        control.ready().await;
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "the pause is honoured"
        );
    }

    #[test]
    fn retry_after_is_capped() {
        let control = RateControl::new(200, 1, Duration::from_secs(2));
        let wait = control.on_throttled(Some(Duration::from_secs(3600)), Duration::ZERO);
        assert_eq!(wait, Duration::from_secs(2));
        assert_eq!(
            control.effective(),
            Some(100.0),
            "no accepted rate known: halved"
        );
    }

    #[test]
    fn the_cut_halves_within_what_the_server_accepted() {
        // 200/s asked, 50/s accepted: settle just under the server's limit.
        assert!((cut(Some(200.0), Some(50.0)) - 45.0).abs() < 1e-9);
        // Random 429s at 100/s with 98/s accepted: a gentle cut, not a halving.
        assert!((cut(Some(100.0), Some(98.0)) - 83.3).abs() < 1e-9);
        assert_eq!(cut(Some(100.0), None), 50.0);
        assert_eq!(
            cut(None, Some(40.0)),
            34.0,
            "no limit yet: start from what was accepted"
        );
        assert_eq!(cut(Some(1.5), None), 1.0);
    }

    #[test]
    fn the_accepted_rate_needs_enough_answers() {
        let now = Instant::now();
        let mut times: VecDeque<Instant> = (0..5).map(|_| now).collect();
        assert_eq!(accepted_rate(&times, now), None);
        times = (0..40)
            .map(|i| now - Duration::from_millis(1000 - i * 25))
            .collect();
        let rate = accepted_rate(&times, now).unwrap();
        assert!((rate - 40.0).abs() < 1e-9, "{rate}");
    }
}

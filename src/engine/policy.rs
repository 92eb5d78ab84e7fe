//! Policies the drain loop is handed: the retry schedule and the (adaptive) request rate.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::store::now_ms;

/// First retry delay before jitter.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const RETRY_CAP: Duration = Duration::from_secs(300);
/// Longest pause a 429 can impose on the whole run.
pub const THROTTLE_CAP: Duration = Duration::from_secs(60);
/// Time without a slow-down before the rate climbs one step back toward the target.
pub const QUIET_PERIOD: Duration = Duration::from_secs(5);
/// Share of 429s among the recent answers above which the run slows down.
pub const THROTTLE_SHARE: f64 = 0.05;

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

/// The request rate: a governor limiter at the effective rate, cut when the *share* of 429s
/// among the recent answers says the server is limiting us, and climbed back when it stops.
///
/// This is AIMD (TCP's congestion control) driven by a windowed throttle ratio, as in the
/// client-side throttling of Google's SRE book: a gateway that answers 429 to a small share of
/// requests whatever the rate (the row just waits its `Retry-After` and goes again) is told
/// apart from a real limit, where the share of 429s climbs with the rate.
///
/// - Every answer goes into a window of the last [`WINDOW_ANSWERS`] answers within
///   [`WINDOW`]. A 429 with more than [`THROTTLE_SHARE`] of the window throttled (counted
///   over at least [`MIN_WINDOW`] answers) is a slow-down: the whole run pauses (the server's
///   `Retry-After`, capped) and the rate is cut to 85-90% of what the server accepted over the
///   last two seconds (half the rate when that is not known). The window then starts afresh, so
///   the answers to requests already in flight belong to the same event.
/// - After [`QUIET_PERIOD`] without a slow-down the rate climbs 10% per period toward the
///   target, but only 2% per period once it is within 10% of the rate the server last accepted.
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
    /// When `effective` took its value, in Unix milliseconds (for the record of the limit).
    changed_ms: i64,
    /// Non-429 answers of the last two seconds.
    accepted: VecDeque<Instant>,
    /// Recent answers: when, and whether it was a 429.
    recent: VecDeque<(Instant, bool)>,
    /// Slow-downs (pauses with a rate cut).
    slowdowns: u64,
    /// Answers that were 429.
    throttled: u64,
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
/// The throttle-share window: at most this many recent answers...
pub const WINDOW_ANSWERS: usize = 100;
/// ...and none older than this.
pub const WINDOW: Duration = Duration::from_secs(10);
/// The share is taken of at least this many answers: a window that has just begun (or a slow
/// run's) counts the answers it has not seen yet as accepted.
pub const MIN_WINDOW: usize = 50;
/// Slowest the adaptive rate goes (unless the configured rate is slower still).
const MIN_RATE: f64 = 1.0;

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

/// Whether the window of recent answers says the server is limiting the rate: more than
/// [`THROTTLE_SHARE`] of them 429, counted over at least [`MIN_WINDOW`] answers so that two
/// early 429s are not yet a share.
fn limited(recent: &VecDeque<(Instant, bool)>) -> bool {
    let throttled = recent.iter().filter(|(_, t)| *t).count();
    throttled as f64 > THROTTLE_SHARE * recent.len().max(MIN_WINDOW) as f64
}

/// The rate after a slow-down: half the effective rate, kept between 85% and 90% of what the
/// server accepted just before (when that is known), never above the effective rate, and at
/// least `floor`.
fn cut(effective: Option<f64>, accepted: Option<f64>, floor: f64) -> f64 {
    let halved = effective.or(accepted).map_or(floor, |r| r / 2.0);
    let rate = match accepted {
        Some(a) => halved.clamp(a * 0.85, a * 0.9),
        None => halved,
    };
    rate.min(effective.unwrap_or(f64::INFINITY)).max(floor)
}

fn limiter(rate: f64, burst: NonZeroU32) -> Arc<DefaultDirectRateLimiter> {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    Arc::new(RateLimiter::direct(quota))
}

impl RateControl {
    /// `rate` requests per second (0: no limit; decimals allowed, 0.5 is one every 2 s) with
    /// `burst` allowed at once.
    pub fn new(rate: impl Into<f64>, burst: u32, throttle_cap: Duration) -> Self {
        let rate: f64 = rate.into();
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let target = (rate > 0.0 && rate.is_finite()).then_some(rate);
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
                changed_ms: now_ms(),
                accepted: VecDeque::new(),
                recent: VecDeque::new(),
                slowdowns: 0,
                throttled: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slowest rate a slow-down may cut to.
    fn floor(&self) -> f64 {
        self.target.map_or(MIN_RATE, |t| t.min(MIN_RATE))
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
        remember(&mut state.recent, now, false);
    }

    /// Notes a 429. When the share of 429s among the recent answers says the server is
    /// limiting the rate, and no pause is under way, the run pauses and slows down. Returns how
    /// long the row should wait before it is sent again (the server's wait, capped, or
    /// `backoff`).
    pub fn on_throttled(&self, retry_after: Option<Duration>, backoff: Duration) -> Duration {
        let now = Instant::now();
        let wait = retry_after.unwrap_or(backoff).min(self.throttle_cap);
        let mut state = self.lock();
        state.throttled += 1;
        if state.pause_until.is_some_and(|u| u > now) {
            return wait;
        }
        remember(&mut state.recent, now, true);
        if !limited(&state.recent) {
            // A 429 now and then: the row waits, the run goes on at its rate.
            return wait;
        }
        state.pause_until = Some(now + wait);
        state.slowdowns += 1;
        state.recent.clear();
        let accepted = accepted_rate(&state.accepted, now);
        let rate = cut(state.effective, accepted, self.floor());
        state.ceiling = accepted.or(state.effective);
        state.effective = Some(rate);
        state.limiter = Some(limiter(rate, self.burst));
        state.last_change = now;
        state.changed_ms = now_ms();
        tracing::info!(
            rate = format!("{rate:.1}"),
            pause_ms = wait.as_millis() as u64,
            "the server is limiting the rate (many 429 answers): pausing and slowing down"
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
        state.changed_ms = now_ms();
    }

    /// The effective rate now (None: no limit).
    pub fn effective(&self) -> Option<f64> {
        self.lock().effective
    }

    /// The effective rate now (None: no limit) and when it took that value (Unix ms).
    pub fn effective_since(&self) -> (Option<f64>, i64) {
        let state = self.lock();
        (state.effective, state.changed_ms)
    }

    /// The configured rate, where the drain starts (None: no limit).
    pub fn target(&self) -> Option<f64> {
        self.target
    }

    /// How many times the run slowed down (paused and cut its rate).
    pub fn throttle_events(&self) -> u64 {
        self.lock().slowdowns
    }

    /// How many answers were 429.
    pub fn throttled_answers(&self) -> u64 {
        self.lock().throttled
    }
}

/// Adds an answer to the throttle-share window, dropping what fell out of it.
fn remember(recent: &mut VecDeque<(Instant, bool)>, now: Instant, throttled: bool) {
    recent.push_back((now, throttled));
    while recent.len() > WINDOW_ANSWERS
        || recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
    {
        recent.pop_front();
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
    async fn a_high_share_of_429s_pauses_and_halves_once_per_event() {
        let control = RateControl::new(100, 1, THROTTLE_CAP);
        let first = control.on_throttled(Some(Duration::from_millis(300)), Duration::from_secs(9));
        assert_eq!(
            first,
            Duration::from_millis(300),
            "the row waits the server's delay"
        );
        control.on_throttled(Some(Duration::from_millis(300)), Duration::from_secs(9));
        assert_eq!(
            control.effective(),
            Some(100.0),
            "two 429s of the first answers are no share yet"
        );
        control.on_throttled(Some(Duration::from_millis(300)), Duration::from_secs(9));
        assert_eq!(control.effective(), Some(50.0));
        // Answers to requests already in flight belong to the same event.
        control.on_throttled(None, Duration::from_secs(1));
        assert_eq!(control.effective(), Some(50.0));
        assert_eq!(control.throttle_events(), 1);
        assert_eq!(control.throttled_answers(), 4);
        let start = Instant::now();
        control.ready().await;
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "the pause is honoured"
        );
    }

    #[test]
    fn a_small_share_of_429s_changes_nothing() {
        let control = RateControl::new(40, 1, THROTTLE_CAP);
        // 1% of answers throttled, spread out: never more than THROTTLE_SHARE of the window.
        for i in 0..2000 {
            if i % 100 == 50 {
                control.on_throttled(Some(Duration::from_secs(1)), Duration::ZERO);
            } else {
                control.on_accepted();
            }
        }
        assert_eq!(control.effective(), Some(40.0));
        assert_eq!(control.throttle_events(), 0);
        assert_eq!(control.throttled_answers(), 20);
        // A burst of them is a limit.
        for _ in 0..10 {
            control.on_throttled(None, Duration::from_millis(1));
        }
        assert_eq!(control.throttle_events(), 1);
    }

    #[test]
    fn retry_after_is_capped() {
        let control = RateControl::new(200, 1, Duration::from_secs(2));
        control.on_throttled(Some(Duration::from_secs(3600)), Duration::ZERO);
        control.on_throttled(Some(Duration::from_secs(3600)), Duration::ZERO);
        let wait = control.on_throttled(Some(Duration::from_secs(3600)), Duration::ZERO);
        assert_eq!(wait, Duration::from_secs(2));
        assert_eq!(
            control.effective(),
            Some(100.0),
            "no accepted rate known: halved"
        );
    }

    #[test]
    fn decimal_rates_are_kept_and_never_cut_below_themselves() {
        let control = RateControl::new(0.5, 1, THROTTLE_CAP);
        assert_eq!(control.effective(), Some(0.5));
        for _ in 0..5 {
            control.on_throttled(None, Duration::ZERO);
        }
        assert_eq!(control.throttle_events(), 1);
        assert_eq!(control.effective(), Some(0.5));
        assert_eq!(RateControl::new(0, 1, THROTTLE_CAP).effective(), None);
    }

    #[test]
    fn the_cut_halves_within_what_the_server_accepted() {
        // 200/s asked, 50/s accepted: settle just under the server's limit.
        assert!((cut(Some(200.0), Some(50.0), 1.0) - 45.0).abs() < 1e-9);
        // 429s at 100/s with 98/s accepted: a gentle cut, not a halving.
        assert!((cut(Some(100.0), Some(98.0), 1.0) - 83.3).abs() < 1e-9);
        assert_eq!(cut(Some(100.0), None, 1.0), 50.0);
        assert_eq!(
            cut(None, Some(40.0), 1.0),
            34.0,
            "no limit yet: start from what was accepted"
        );
        assert_eq!(cut(Some(1.5), None, 1.0), 1.0);
    }

    #[test]
    fn the_share_window_needs_more_than_five_percent_of_at_least_fifty() {
        let now = Instant::now();
        let mut recent = VecDeque::new();
        remember(&mut recent, now, true);
        assert!(!limited(&recent), "one 429 is no evidence");
        remember(&mut recent, now, true);
        assert!(!limited(&recent), "2 of the first answers are 2 of 50");
        remember(&mut recent, now, true);
        assert!(limited(&recent), "3 of at least 50");
        for _ in 0..WINDOW_ANSWERS {
            remember(&mut recent, now, false);
        }
        assert_eq!(recent.len(), WINDOW_ANSWERS);
        assert!(!limited(&recent), "the 429s fell out of the window");
        for _ in 0..5 {
            remember(&mut recent, now, true);
        }
        assert!(!limited(&recent), "5 of 100 is not more than 5%");
        remember(&mut recent, now, true);
        assert!(limited(&recent));
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

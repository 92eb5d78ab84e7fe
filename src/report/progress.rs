//! Progress display: an indicatif bar on a terminal, plain lines in logs, nothing in tests.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Files smaller than this ingest too fast for a bar to help.
const BAR_MIN_BYTES: u64 = 8 * 1024 * 1024;

/// Whether bars may be drawn: allowed by the flags and stderr is a terminal.
pub fn stderr_is_terminal(allowed: bool) -> bool {
    allowed && std::io::stderr().is_terminal()
}

/// A bytes-read bar for one input file, fed from a shared counter.
#[derive(Debug)]
pub struct ByteBar {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl ByteBar {
    /// Starts a bar for `total` bytes when drawing is allowed and the file is large.
    pub fn start(label: &str, total: Option<u64>, counter: Arc<AtomicU64>, allowed: bool) -> Self {
        let large = total.is_none_or(|t| t >= BAR_MIN_BYTES);
        if !stderr_is_terminal(allowed) || !large {
            return Self {
                bar: None,
                ticker: None,
            };
        }
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.to_owned());
        set_active(Some(&bar));
        let start = counter.load(Ordering::Relaxed);
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                ticking.set_position(counter.load(Ordering::Relaxed).saturating_sub(start));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        if let Some(bar) = self.bar {
            set_active(None);
            bar.finish_and_clear();
        }
    }
}

/// How often a plain progress line is written when stderr is not a terminal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How often the bar is redrawn.
const BAR_INTERVAL: Duration = Duration::from_millis(200);
/// Narrowest terminal the line is fitted to; narrower ones get it cut.
pub const MIN_WIDTH: usize = 60;

/// The bar being drawn, if any: log lines are written above it (see [`write_above_bar`]).
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn active_bar() -> std::sync::MutexGuard<'static, Option<ProgressBar>> {
    ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes `bar` the one log lines are written above, until it is finished.
fn set_active(bar: Option<&ProgressBar>) {
    *active_bar() = bar.cloned();
}

/// Writes `text` to stderr: above the bar when one is drawn (the bar is cleared, the text
/// written, the bar drawn again), straight through otherwise. The logger writes every line
/// through this, so a log line never tears through the bar.
pub fn write_above_bar(text: &[u8]) -> std::io::Result<()> {
    let bar = active_bar().clone();
    let write = || {
        let mut err = std::io::stderr().lock();
        err.write_all(text).and_then(|()| err.flush())
    };
    match bar {
        Some(bar) if !bar.is_hidden() && !bar.is_finished() => bar.suspend(write),
        _ => write(),
    }
}

/// The terminal's width, less one column (writing the last column makes some terminals wrap).
fn terminal_width() -> usize {
    let (_, columns) = console::Term::stderr().size();
    usize::from(columns).saturating_sub(1).max(MIN_WIDTH)
}

/// The drain display: a bar on a terminal, a log line every [`LOG_INTERVAL`] otherwise, or
/// nothing. It only reads the engine's progress channel.
#[derive(Debug)]
pub struct DrainDisplay {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl DrainDisplay {
    /// Starts drawing the progress of the run named `run`.
    pub fn start(
        run: &str,
        mut progress: tokio::sync::watch::Receiver<crate::engine::Progress>,
        allowed: bool,
    ) -> Self {
        if !allowed {
            return Self {
                task: None,
                bar: None,
            };
        }
        if stderr_is_terminal(true) {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            // The whole line is rendered here, fitted to the width; `wide_msg` also cuts it
            // should the terminal shrink between two redraws.
            let style = ProgressStyle::with_template("{wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            set_active(Some(&bar));
            let drawn = bar.clone();
            let run = run.to_owned();
            let task = tokio::spawn(async move {
                // Nothing is drawn before the engine's first snapshot, which carries the
                // total: the channel's initial value would draw "0/0". A drain with nothing
                // to send sends none, and the bar stays blank until cleared.
                if progress.changed().await.is_err() {
                    return;
                }
                let mut meter = RateMeter::default();
                loop {
                    let p = *progress.borrow();
                    let per_sec = meter.update(Instant::now(), p.done());
                    drawn.set_message(bar_line(&run, &p, per_sec, terminal_width()));
                    tokio::time::sleep(BAR_INTERVAL).await;
                }
            });
            Self {
                task: Some(task),
                bar: Some(bar),
            }
        } else {
            let run = run.to_owned();
            let task = tokio::spawn(async move {
                let mut meter = RateMeter::default();
                let started = Instant::now();
                meter.update(started, 0);
                loop {
                    tokio::time::sleep(LOG_INTERVAL).await;
                    let p = *progress.borrow();
                    let per_sec = meter.update(Instant::now(), p.done());
                    tracing::info!("{run}: {}", log_line(&p, per_sec));
                }
            });
            Self {
                task: Some(task),
                bar: None,
            }
        }
    }

    /// Stops drawing and clears the bar.
    pub fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        if let Some(bar) = self.bar {
            set_active(None);
            bar.finish_and_clear();
        }
    }
}

/// How far back the rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// The shortest span a rate is measured over.
const RATE_MIN_SPAN: Duration = Duration::from_millis(500);

/// Rows per second over the last [`RATE_WINDOW`], once something has been measured.
#[derive(Debug, Default)]
struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    /// Adds a reading; the rate, once at least one row is done over a measurable span.
    fn update(&mut self, now: Instant, done: u64) -> Option<f64> {
        self.samples.push_back((now, done));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let (first_at, first_done) = *self.samples.front()?;
        let span = now.duration_since(first_at);
        if done == 0 || span < RATE_MIN_SPAN {
            return None;
        }
        Some(done.saturating_sub(first_done) as f64 / span.as_secs_f64())
    }
}

/// "eta 2m 5s" at `per_sec`, when there is a rate and rows are left.
fn eta(p: &crate::engine::Progress, per_sec: Option<f64>) -> Option<String> {
    let left = p.total.saturating_sub(p.done());
    let rate = per_sec.filter(|r| *r > 0.01)?;
    (left > 0).then(|| compact_duration((left as f64 / rate).round() as u64))
}

/// A duration in at most two units: "49h14m", "3m05s", "42s".
fn compact_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// The counts and the limit: "12 ok, 1 failed, 3 to retry, limit 4.5/s".
fn detail(p: &crate::engine::Progress) -> String {
    let limit = match p.rate_limit {
        Some(r) => format!(", limit {r:.1}/s"),
        None => String::new(),
    };
    format!(
        "{} ok, {} failed, {} to retry{limit}",
        p.succeeded, p.failed, p.waiting
    )
}

/// "4.9 rows/s, eta 2m" or "measuring the rate".
fn speed(p: &crate::engine::Progress, per_sec: Option<f64>) -> String {
    match (per_sec, eta(p, per_sec)) {
        (Some(r), Some(eta)) => format!("{r:.1} rows/s, eta {eta}"),
        (Some(r), None) => format!("{r:.1} rows/s"),
        (None, _) => "measuring the rate".to_owned(),
    }
}

/// The plain progress line for logs: "120/5000 done, 4.9 rows/s, eta 16m 36s, 118 ok, ...".
fn log_line(p: &crate::engine::Progress, per_sec: Option<f64>) -> String {
    format!(
        "{}/{} done, {}, {}",
        p.done(),
        p.total,
        speed(p, per_sec),
        detail(p)
    )
}

/// The bar, one line of at most `width` characters (never less than [`MIN_WIDTH`]):
/// "nightly [=====>    ] 120/5000 4.9 rows/s, eta 16m 36s | 118 ok, 2 failed, 0 to retry".
/// The bar shrinks first, then the tail is cut with an ellipsis.
pub fn bar_line(
    run: &str,
    p: &crate::engine::Progress,
    per_sec: Option<f64>,
    width: usize,
) -> String {
    let width = width.max(MIN_WIDTH);
    let name = fit(run, 16);
    let head = format!("{}/{} {}", p.done(), p.total, speed(p, per_sec));
    let tail = format!(" | {}", detail(p));
    let fixed = name.chars().count() + 3 + 1 + head.chars().count();
    let room = width.saturating_sub(fixed + tail.chars().count());
    let bar_width = room.clamp(10, 30);
    let filled = (bar_width as u64 * p.done().min(p.total))
        .checked_div(p.total)
        .unwrap_or(0) as usize;
    let bar = if filled >= bar_width {
        "=".repeat(bar_width)
    } else {
        format!(
            "{}>{}",
            "=".repeat(filled),
            " ".repeat(bar_width - filled - 1)
        )
    };
    fit(&format!("{name} [{bar}] {head}{tail}"), width)
}

/// `text` cut to at most `max` characters, ending in an ellipsis when cut.
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Progress;

    fn progress() -> Progress {
        Progress {
            total: 1_000_000,
            succeeded: 123_456,
            failed: 7_890,
            waiting: 1_234,
            requests: 140_000,
            rate_limit: Some(4.5),
        }
    }

    #[test]
    fn the_bar_is_one_line_within_the_width_at_any_width_from_60() {
        let long_name = "nightly-zendesk-full-export-2026-12-01";
        for width in [60, 61, 72, 80, 100, 120, 200] {
            for per_sec in [None, Some(4.9), Some(12_345.6)] {
                let line = bar_line(long_name, &progress(), per_sec, width);
                assert!(line.chars().count() <= width, "{width}: {line:?}");
                assert!(!line.contains('\n'));
            }
        }
        // Narrower than 60: fitted to 60 all the same (a terminal that narrow cuts it).
        assert!(bar_line("r", &progress(), None, 20).chars().count() <= MIN_WIDTH);
    }

    #[test]
    fn the_bar_line_at_80_and_120_columns() {
        let p = progress();
        assert_eq!(
            bar_line("nightly", &p, Some(4.9), 80),
            "nightly [=>        ] 131346/1000000 4.9 rows/s, eta 49h14m | 123456 ok, 7890 fa…"
        );
        assert_eq!(
            bar_line("nightly", &p, Some(4.9), 120),
            "nightly [==>                ] 131346/1000000 4.9 rows/s, eta 49h14m | \
             123456 ok, 7890 failed, 1234 to retry, limit 4.5/s"
        );
        assert_eq!(
            bar_line(
                "a-very-long-run-name-indeed",
                &Progress::default(),
                None,
                60
            ),
            "a-very-long-run… [>         ] 0/0 measuring the rate | 0 ok…"
        );
    }

    #[test]
    fn the_rate_shows_as_soon_as_a_row_is_done() {
        let start = Instant::now();
        let mut meter = RateMeter::default();
        assert_eq!(meter.update(start, 0), None);
        assert_eq!(meter.update(start + Duration::from_millis(200), 3), None);
        let rate = meter.update(start + Duration::from_secs(1), 5).unwrap();
        assert!((rate - 5.0).abs() < 1e-9, "{rate}");
        // The window moves on: only the last 10 s count.
        let rate = meter.update(start + Duration::from_secs(30), 105).unwrap();
        assert!((rate - 100.0 / 29.0).abs() < 1e-9, "{rate}");
        let line = log_line(
            &Progress {
                total: 10,
                succeeded: 5,
                ..Progress::default()
            },
            Some(5.0),
        );
        assert_eq!(
            line,
            "5/10 done, 5.0 rows/s, eta 1s, 5 ok, 0 failed, 0 to retry"
        );
        assert_eq!(compact_duration(185), "3m05s");
        assert_eq!(compact_duration(7260), "2h01m");
    }
}

//! Progress display: an indicatif bar on a terminal, plain lines in logs, nothing in tests.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
            bar.finish_and_clear();
        }
    }
}

/// How often a plain progress line is written when stderr is not a terminal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

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
        progress: tokio::sync::watch::Receiver<crate::engine::Progress>,
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
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(run.to_owned());
            let drawn = bar.clone();
            let task = tokio::spawn(async move {
                let mut rate = RateMeter::default();
                loop {
                    let p = *progress.borrow();
                    let per_sec = rate.update(p.done());
                    drawn.set_length(p.total);
                    drawn.set_position(p.done());
                    drawn.set_message(line(&p, per_sec));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            Self {
                task: Some(task),
                bar: Some(bar),
            }
        } else {
            let run = run.to_owned();
            let task = tokio::spawn(async move {
                let mut rate = RateMeter::default();
                loop {
                    tokio::time::sleep(LOG_INTERVAL).await;
                    let p = *progress.borrow();
                    let per_sec = rate.update(p.done());
                    tracing::info!(
                        "{run}: {}/{} done, {}",
                        p.done(),
                        p.total,
                        line(&p, per_sec)
                    );
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
            bar.finish_and_clear();
        }
    }
}

/// Rows per second between two readings, smoothed.
#[derive(Debug, Default)]
struct RateMeter {
    last: Option<(std::time::Instant, u64)>,
    smoothed: f64,
}

impl RateMeter {
    fn update(&mut self, done: u64) -> f64 {
        let now = std::time::Instant::now();
        if let Some((at, before)) = self.last {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let instant = done.saturating_sub(before) as f64 / secs;
                self.smoothed = if self.smoothed == 0.0 {
                    instant
                } else {
                    0.7 * self.smoothed + 0.3 * instant
                };
            }
        }
        self.last = Some((now, done));
        self.smoothed
    }
}

/// "12 ok, 1 failed, 3 waiting to retry, 4.9/s, eta 2m".
fn line(p: &crate::engine::Progress, per_sec: f64) -> String {
    let left = p.total.saturating_sub(p.done());
    let eta = if per_sec > 0.01 && left > 0 {
        let secs = (left as f64 / per_sec).round() as u64;
        format!(
            ", eta {}",
            humantime::format_duration(Duration::from_secs(secs))
        )
    } else {
        String::new()
    };
    let limit = match p.rate_limit {
        Some(r) => format!(" (limit {r:.1}/s)"),
        None => String::new(),
    };
    format!(
        "{} succeeded, {} failed, {} waiting to retry, {per_sec:.1} rows/s{limit}{eta}",
        p.succeeded, p.failed, p.waiting
    )
}

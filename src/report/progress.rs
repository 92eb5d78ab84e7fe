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

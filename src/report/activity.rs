//! What `status` says about a run's pace: last activity, the recent rate, an ETA, top errors.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::store::{Activity, AttemptError, Counts};

/// A run counts as active when a row changed this recently and rows are still open.
const ACTIVE_WITHIN_MS: i64 = 120_000;
/// The longest error message shown.
const MESSAGE_CHARS: usize = 120;

/// A run's pace, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pace {
    /// When a row last changed (RFC 3339, UTC).
    pub last_activity: Option<String>,
    /// Seconds since then.
    pub seconds_since_activity: Option<u64>,
    /// Rows are open and one changed in the last two minutes: a runner is probably at work.
    pub active: bool,
    /// Rows finished per second over the minute up to the last activity.
    pub recent_rate: Option<f64>,
    /// Seconds left at the recent rate, while active.
    pub eta_seconds: Option<u64>,
}

impl Pace {
    /// The pace from the store's activity figures, at `now_ms`.
    pub fn new(activity: &Activity, counts: &Counts, now_ms: i64) -> Pace {
        let Some(last) = activity.last_ms else {
            return Pace {
                last_activity: None,
                seconds_since_activity: None,
                active: false,
                recent_rate: None,
                eta_seconds: None,
            };
        };
        let open = counts.pending + counts.in_flight;
        let active = open > 0 && now_ms - last <= ACTIVE_WITHIN_MS;
        let recent_rate = activity.first_in_last_minute_ms.map(|first| {
            // A run that finished its last rows within a second is measured over a second.
            let span_ms = (last - first).max(1000);
            activity.finished_in_last_minute as f64 * 1000.0 / span_ms as f64
        });
        let eta_seconds = match recent_rate {
            Some(rate) if active && rate > 0.0 => Some((open as f64 / rate).ceil() as u64),
            _ => None,
        };
        let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(last).unwrap_or(0));
        Pace {
            last_activity: Some(humantime::format_rfc3339_seconds(at).to_string()),
            seconds_since_activity: Some(u64::try_from((now_ms - last).max(0) / 1000).unwrap_or(0)),
            active,
            recent_rate,
            eta_seconds,
        }
    }

    /// "Last activity: ... (12s ago), 4.9 rows/s over the last minute, about 2h 1m left".
    pub fn text(&self) -> String {
        let (Some(last), Some(ago)) = (&self.last_activity, self.seconds_since_activity) else {
            return "Last activity: none yet (nothing sent)\n".to_owned();
        };
        let mut out = format!(
            "Last activity: {last} ({} ago)",
            humantime::format_duration(Duration::from_secs(ago))
        );
        if let Some(rate) = self.recent_rate {
            let _ = write!(out, "; {rate:.1} rows/s over its last minute");
        }
        match (self.active, self.eta_seconds) {
            (true, Some(eta)) => {
                let _ = write!(
                    out,
                    "; running, about {} left at that rate",
                    humantime::format_duration(Duration::from_secs(eta))
                );
            }
            (true, None) => out.push_str("; running"),
            (false, _) => {}
        }
        out.push('\n');
        out
    }
}

/// One kind of failed attempt, with a readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopError {
    pub class: String,
    pub http_status: Option<i64>,
    pub message: String,
    pub count: i64,
}

impl TopError {
    /// The message of an attempt: the body's `message` when it is Kapture's JSON, else the
    /// start of the body, else the HTTP status or that nothing came back.
    pub fn new(error: AttemptError) -> TopError {
        let message = message_of(&error.excerpt).unwrap_or_else(|| {
            let flat = error
                .excerpt
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            match (flat.is_empty(), error.http_status) {
                (false, _) => flat,
                (true, Some(status)) => format!("HTTP {status}"),
                (true, None) => "no answer".to_owned(),
            }
        });
        let message = if message.chars().count() > MESSAGE_CHARS {
            let mut cut: String = message.chars().take(MESSAGE_CHARS - 1).collect();
            cut.push('…');
            cut
        } else {
            message
        };
        TopError {
            class: error.class,
            http_status: error.http_status,
            message,
            count: error.count,
        }
    }
}

/// The `message` (or `Message`) of a JSON object body.
fn message_of(excerpt: &str) -> Option<String> {
    let serde_json::Value::Object(map) = serde_json::from_str(excerpt).ok()? else {
        return None;
    };
    map.into_iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("message"))
        .map(|(_, value)| match value {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
}

/// The top errors as lines under a heading; nothing when there are none.
pub fn errors_text(errors: &[TopError]) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let mut out = String::from("Most frequent errors (all attempts):\n");
    for e in errors {
        let status = e
            .http_status
            .map(|s| format!(" HTTP {s}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {:>7} x {}{status}: {}", e.count, e.class, e.message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pending: i64, succeeded: i64) -> Counts {
        Counts {
            pending,
            succeeded,
            ..Counts::default()
        }
    }

    #[test]
    fn an_active_run_has_a_rate_and_an_eta() {
        let activity = Activity {
            last_ms: Some(1_000_000),
            finished_in_last_minute: 300,
            first_in_last_minute_ms: Some(940_000),
        };
        let pace = Pace::new(&activity, &counts(1000, 300), 1_002_000);
        assert!(pace.active);
        assert_eq!(pace.recent_rate, Some(5.0));
        assert_eq!(pace.eta_seconds, Some(200));
        assert_eq!(pace.seconds_since_activity, Some(2));
        assert_eq!(
            pace.text(),
            "Last activity: 1970-01-01T00:16:40Z (2s ago); 5.0 rows/s over its last minute; \
             running, about 3m 20s left at that rate\n"
        );
    }

    #[test]
    fn a_finished_or_idle_run_has_no_eta() {
        let activity = Activity {
            last_ms: Some(1_000_000),
            finished_in_last_minute: 3,
            first_in_last_minute_ms: Some(999_900),
        };
        let finished = Pace::new(&activity, &counts(0, 3), 5_000_000);
        assert!(!finished.active);
        assert_eq!(
            finished.recent_rate,
            Some(3.0),
            "measured over at least a second"
        );
        assert_eq!(finished.eta_seconds, None);
        let stalled = Pace::new(&activity, &counts(10, 3), 5_000_000);
        assert!(!stalled.active, "nothing for over an hour");
        let never = Pace::new(&Activity::default(), &counts(10, 0), 5_000_000);
        assert_eq!(never.text(), "Last activity: none yet (nothing sent)\n");
    }

    #[test]
    fn error_messages_come_from_the_body_or_the_status() {
        let error = |excerpt: &str, status| AttemptError {
            class: "rejected".into(),
            http_status: status,
            excerpt: excerpt.into(),
            count: 2,
        };
        let json = TopError::new(error(
            r#"{"Status":"failed","Message":"Invalid sub_status"}"#,
            Some(200),
        ));
        assert_eq!(json.message, "Invalid sub_status");
        let html = TopError::new(error("<html>\n <h1>502</h1>\n</html>", Some(502)));
        assert_eq!(html.message, "<html> <h1>502</h1> </html>");
        assert_eq!(TopError::new(error("", Some(503))).message, "HTTP 503");
        assert_eq!(TopError::new(error("", None)).message, "no answer");
        assert_eq!(
            errors_text(&[json]),
            "Most frequent errors (all attempts):\n        2 x rejected HTTP 200: Invalid sub_status\n"
        );
    }
}

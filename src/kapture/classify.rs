//! Response classification: one pure function from what came back to what the engine does.
//!
//! The rules are DESIGN.md's table, decided top to bottom; the first matching row wins.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::EXCERPT_BYTES;

/// What a request produced, as far as classification cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// Nothing reached the server: connect refused, DNS, TLS, reset before the request was
    /// fully sent.
    NotSent,
    /// The request was (or may have been) sent, but no complete answer came back: a timeout or
    /// a reset after sending. The server may have applied the update.
    InDoubt,
    /// An HTTP answer.
    Http {
        /// The HTTP status code.
        status: u16,
        /// The raw `Retry-After` header, if any.
        retry_after: Option<&'a str>,
        /// The response body.
        body: &'a [u8],
    },
}

/// Why a request never reached the server (connect refused, a name that does not resolve, a
/// TLS handshake that failed, a connect timeout). Such a request used no attempt: the row is
/// fine, the way to Kapture is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unreached {
    /// Nothing listens there (connection refused).
    Refused,
    /// The host name does not resolve.
    Dns,
    /// The server's TLS certificate is not trusted by this system.
    UntrustedCertificate,
    /// The TLS handshake failed for another reason.
    Tls,
    /// The connection was not accepted in time.
    ConnectTimeout,
    /// Another failure before the request was sent.
    Other,
}

impl Unreached {
    /// Tells the cause from a transport error's text (its whole chain, any case) and what the
    /// HTTP library knew: whether the OS refused the connection and whether it timed out.
    pub fn from_error_text(text: &str, refused: bool, timed_out: bool) -> Unreached {
        let text = text.to_ascii_lowercase();
        let any = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
        if refused || any(&["connection refused"]) {
            Unreached::Refused
        } else if any(&[
            "dns error",
            "failed to lookup address",
            "name or service not known",
            "no such host",
            "nodename nor servname",
            "temporary failure in name resolution",
        ]) {
            Unreached::Dns
        } else if any(&["certificate", "unknownissuer", "unknown issuer"]) {
            Unreached::UntrustedCertificate
        } else if any(&["tls", "handshake", "alert"]) {
            Unreached::Tls
        } else if timed_out || any(&["timed out", "timeout"]) {
            Unreached::ConnectTimeout
        } else {
            Unreached::Other
        }
    }

    /// What to tell a person, before the library's own text.
    pub fn explain(&self) -> &'static str {
        match self {
            Unreached::Refused => "connection refused: nothing listens at that address",
            Unreached::Dns => "the host name does not resolve: check --subdomain or --base-url",
            Unreached::UntrustedCertificate => {
                "the server's TLS certificate is not trusted by this system (a proxy that \
                 intercepts TLS needs its CA in the system's trust store)"
            }
            Unreached::Tls => "the TLS handshake failed",
            Unreached::ConnectTimeout => "the server did not accept the connection in time",
            Unreached::Other => "the request could not be sent",
        }
    }
}

/// What the engine should do with a row after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The update was applied.
    Success,
    /// The token is invalid or expired: halt the run.
    Auth,
    /// The token lacks permission: halt the run.
    Forbidden,
    /// Kapture refused this row for good: fail it, keep the message.
    Rejected,
    /// Too many requests: wait (the server's delay when it gave one) and send again.
    Throttled {
        /// The server's `Retry-After`, when it sent a usable one.
        retry_after: Option<Duration>,
    },
    /// A passing failure: retry with backoff.
    Transient,
    /// A passing failure after the request went out: retry, and mark the attempt in doubt.
    TransientInDoubt,
    /// The request never reached the server (refused, DNS, TLS, connect timeout): the row is
    /// fine and uses no attempt; the run waits for Kapture to be reachable again.
    NotReceived,
}

impl Class {
    /// The class name stored in the attempts log.
    pub fn as_str(&self) -> &'static str {
        match self {
            Class::Success => "success",
            Class::Auth => "auth",
            Class::Forbidden => "forbidden",
            Class::Rejected => "rejected",
            Class::Throttled { .. } => "throttled",
            Class::Transient => "transient",
            Class::TransientInDoubt => "transient_in_doubt",
            Class::NotReceived => "not_received",
        }
    }
}

/// Classifies an answer; `now` turns an HTTP-date `Retry-After` into a delay.
pub fn classify(answer: &Answer<'_>, now: SystemTime) -> Class {
    match *answer {
        Answer::NotSent => Class::NotReceived,
        Answer::InDoubt => Class::TransientInDoubt,
        Answer::Http {
            status,
            retry_after,
            body,
        } => classify_http(status, retry_after, &BodyFields::parse(body), now),
    }
}

/// Reads `Retry-After` as delay-seconds or an HTTP-date; a date in the past means no wait.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A bounded excerpt of a body for the attempts log: at most [`EXCERPT_BYTES`] bytes, cut on a
/// character boundary, invalid UTF-8 replaced.
pub fn excerpt(body: &[u8]) -> String {
    let prefix = &body[..body.len().min(EXCERPT_BYTES)];
    let mut text = match std::str::from_utf8(prefix) {
        Ok(text) => text.to_owned(),
        // A character cut in half by the limit: drop its first bytes.
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&prefix[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(prefix).into_owned(),
    };
    if text.len() > EXCERPT_BYTES {
        let mut end = EXCERPT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The parts of a Kapture JSON body that matter, keys read case-insensitively.
#[derive(Debug, Default)]
pub(crate) struct BodyFields {
    /// `status`, when the body is a JSON object that has one.
    pub status: Option<String>,
    /// `message`, when present (a non-string message is kept as its JSON text).
    pub message: Option<String>,
    /// `ticket`, the snapshot a success carries.
    pub ticket: Option<Value>,
    /// The whole parsed body, when it is JSON.
    pub json: Option<Value>,
}

impl BodyFields {
    /// Parses a body; anything that is not a JSON object yields no status.
    pub(crate) fn parse(body: &[u8]) -> BodyFields {
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            return BodyFields::default();
        };
        let mut fields = BodyFields::default();
        if let Value::Object(map) = &json {
            let text = |value: &Value| match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            for (key, value) in map {
                if key.eq_ignore_ascii_case("status") && fields.status.is_none() {
                    fields.status = Some(text(value));
                } else if key.eq_ignore_ascii_case("message") && fields.message.is_none() {
                    fields.message = Some(text(value));
                } else if key.eq_ignore_ascii_case("ticket") && fields.ticket.is_none() {
                    fields.ticket = Some(value.clone());
                }
            }
        }
        fields.json = Some(json);
        fields
    }

    fn says_invalid_auth_key(&self) -> bool {
        self.message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("invalid auth key"))
    }
}

/// The HTTP rows of the table, on an already parsed body.
pub(crate) fn classify_http(
    status: u16,
    retry_after: Option<&str>,
    body: &BodyFields,
    now: SystemTime,
) -> Class {
    if status == 401 || body.says_invalid_auth_key() {
        return Class::Auth;
    }
    match status {
        403 => Class::Forbidden,
        429 => Class::Throttled {
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        500..=599 | 408 => Class::Transient,
        300..=499 => Class::Rejected,
        200..=299 => match body.status.as_deref().map(str::trim) {
            Some(s) if s.eq_ignore_ascii_case("success") => Class::Success,
            Some(s) if s.eq_ignore_ascii_case("failed") || s.eq_ignore_ascii_case("failure") => {
                Class::Rejected
            }
            // Not JSON, no status, or a status nobody documented: a proxy or a maintenance
            // page answered, so try again later.
            _ => Class::Transient,
        },
        // 1xx never reaches here through reqwest; anything else unknown is passing.
        _ => Class::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTML: &[u8] = b"<html><body><h1>502 Bad Gateway</h1></body></html>";
    const FAILED: &[u8] = br#"{"status":"failed","message":"ticket_id missing"}"#;
    const AUTH: &[u8] = br#"{"status":"failed","message":"Invalid Auth Key"}"#;
    const SUCCESS: &[u8] =
        br#"{"status":"success","message":"Ticket updated","ticket":{"ticket_id":"1"}}"#;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn http(status: u16, retry_after: Option<&str>, body: &[u8]) -> Class {
        classify(
            &Answer::Http {
                status,
                retry_after,
                body,
            },
            now(),
        )
    }

    fn throttled(secs: Option<u64>) -> Class {
        Class::Throttled {
            retry_after: secs.map(Duration::from_secs),
        }
    }

    #[test]
    fn every_row_of_the_table() {
        let date_in_90s = httpdate::fmt_http_date(now() + Duration::from_secs(90));
        let date_past = httpdate::fmt_http_date(now() - Duration::from_secs(90));
        #[rustfmt::skip]
        let rows: Vec<(&str, Answer<'_>, Class)> = vec![
            // no response
            ("not sent", Answer::NotSent, Class::NotReceived),
            ("in doubt", Answer::InDoubt, Class::TransientInDoubt),
            // auth, any status
            ("401 empty", Answer::Http { status: 401, retry_after: None, body: b"" }, Class::Auth),
            ("401 html", Answer::Http { status: 401, retry_after: None, body: HTML }, Class::Auth),
            ("200 invalid auth key", Answer::Http { status: 200, retry_after: None, body: AUTH }, Class::Auth),
            ("500 invalid auth key", Answer::Http { status: 500, retry_after: None, body: AUTH }, Class::Auth),
            ("400 invalid auth key", Answer::Http { status: 400, retry_after: None, body: AUTH }, Class::Auth),
            ("200 Message Invalid Auth Key", Answer::Http { status: 200, retry_after: None,
                body: br#"{"Status":"Failed","Message":"invalid auth key"}"# }, Class::Auth),
            // forbidden
            ("403", Answer::Http { status: 403, retry_after: None, body: FAILED }, Class::Forbidden),
            // throttled
            ("429 seconds", Answer::Http { status: 429, retry_after: Some("7"), body: b"" }, throttled(Some(7))),
            ("429 date", Answer::Http { status: 429, retry_after: Some(&date_in_90s), body: b"" }, throttled(Some(90))),
            ("429 date past", Answer::Http { status: 429, retry_after: Some(&date_past), body: b"" }, throttled(Some(0))),
            ("429 garbage", Answer::Http { status: 429, retry_after: Some("soon"), body: b"" }, throttled(None)),
            ("429 none", Answer::Http { status: 429, retry_after: None, body: HTML }, throttled(None)),
            ("429 failed json", Answer::Http { status: 429, retry_after: Some("2"), body: FAILED }, throttled(Some(2))),
            // transient
            ("500 html", Answer::Http { status: 500, retry_after: None, body: HTML }, Class::Transient),
            ("502 html", Answer::Http { status: 502, retry_after: None, body: HTML }, Class::Transient),
            ("503 failed json", Answer::Http { status: 503, retry_after: Some("5"), body: FAILED }, Class::Transient),
            ("504", Answer::Http { status: 504, retry_after: None, body: b"" }, Class::Transient),
            ("408", Answer::Http { status: 408, retry_after: None, body: b"" }, Class::Transient),
            // rejected: 3xx and other 4xx
            ("301", Answer::Http { status: 301, retry_after: None, body: b"" }, Class::Rejected),
            ("302 success body", Answer::Http { status: 302, retry_after: None, body: SUCCESS }, Class::Rejected),
            ("307", Answer::Http { status: 307, retry_after: None, body: HTML }, Class::Rejected),
            ("400", Answer::Http { status: 400, retry_after: None, body: FAILED }, Class::Rejected),
            ("404", Answer::Http { status: 404, retry_after: None, body: HTML }, Class::Rejected),
            ("405", Answer::Http { status: 405, retry_after: None, body: b"" }, Class::Rejected),
            ("413", Answer::Http { status: 413, retry_after: None, body: b"" }, Class::Rejected),
            ("422", Answer::Http { status: 422, retry_after: None, body: FAILED }, Class::Rejected),
            // 2xx by body
            ("200 success", Answer::Http { status: 200, retry_after: None, body: SUCCESS }, Class::Success),
            ("201 success", Answer::Http { status: 201, retry_after: None, body: SUCCESS }, Class::Success),
            ("200 Status Success", Answer::Http { status: 200, retry_after: None,
                body: br#"{"Status":"Success","Message":"ok"}"# }, Class::Success),
            ("200 failed", Answer::Http { status: 200, retry_after: None, body: FAILED }, Class::Rejected),
            ("200 Invalid Format", Answer::Http { status: 200, retry_after: None,
                body: br#"{"status":"failed","message":"Invalid Format"}"# }, Class::Rejected),
            ("200 STATUS FAILED", Answer::Http { status: 200, retry_after: None,
                body: br#"{"STATUS":"FAILED","MESSAGE":"anything"}"# }, Class::Rejected),
            ("200 html", Answer::Http { status: 200, retry_after: None, body: HTML }, Class::Transient),
            ("200 empty", Answer::Http { status: 200, retry_after: None, body: b"" }, Class::Transient),
            ("200 json without status", Answer::Http { status: 200, retry_after: None,
                body: br#"{"message":"maintenance"}"# }, Class::Transient),
            ("200 json array", Answer::Http { status: 200, retry_after: None,
                body: br#"[{"status":"success"}]"# }, Class::Transient),
            ("200 unknown status", Answer::Http { status: 200, retry_after: None,
                body: br#"{"status":"queued"}"# }, Class::Transient),
        ];
        for (name, answer, expected) in rows {
            assert_eq!(classify(&answer, now()), expected, "row {name}");
        }
    }

    #[test]
    fn the_cause_of_an_unsent_request_is_told_from_its_error() {
        #[rustfmt::skip]
        let rows = [
            ("error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)", false, false, Unreached::Refused),
            ("error sending request: client error (Connect)", true, false, Unreached::Refused),
            ("client error (Connect): dns error: failed to lookup address information: Name or service not known", false, false, Unreached::Dns),
            ("client error (Connect): invalid peer certificate: UnknownIssuer", false, false, Unreached::UntrustedCertificate),
            ("client error (Connect): received fatal alert: HandshakeFailure", false, false, Unreached::Tls),
            ("client error (Connect): operation timed out", false, true, Unreached::ConnectTimeout),
            ("client error (Connect)", false, false, Unreached::Other),
        ];
        for (text, refused, timed_out, expected) in rows {
            assert_eq!(
                Unreached::from_error_text(text, refused, timed_out),
                expected,
                "{text}"
            );
        }
        assert!(
            Unreached::UntrustedCertificate
                .explain()
                .contains("not trusted")
        );
    }

    #[test]
    fn the_http_status_outranks_a_failed_body() {
        assert_eq!(http(429, None, FAILED), throttled(None));
        assert_eq!(http(500, None, FAILED), Class::Transient);
    }

    #[test]
    fn class_names_are_stable() {
        let names: Vec<_> = [
            Class::Success,
            Class::Auth,
            Class::Forbidden,
            Class::Rejected,
            throttled(Some(1)),
            Class::Transient,
            Class::TransientInDoubt,
            Class::NotReceived,
        ]
        .iter()
        .map(Class::as_str)
        .collect();
        assert_eq!(
            names,
            [
                "success",
                "auth",
                "forbidden",
                "rejected",
                "throttled",
                "transient",
                "transient_in_doubt",
                "not_received"
            ]
        );
    }

    #[test]
    fn body_fields_are_read_case_insensitively() {
        let fields = BodyFields::parse(br#"{"Status":"failed","Message":"Invalid Format"}"#);
        assert_eq!(fields.status.as_deref(), Some("failed"));
        assert_eq!(fields.message.as_deref(), Some("Invalid Format"));
        let fields = BodyFields::parse(SUCCESS);
        assert_eq!(fields.ticket.unwrap()["ticket_id"], "1");
    }

    #[test]
    fn excerpts_are_bounded_on_a_char_boundary() {
        assert_eq!(excerpt(b"short"), "short");
        let long = "é".repeat(400); // 800 bytes
        let cut = excerpt(long.as_bytes());
        assert!(cut.len() <= EXCERPT_BYTES, "{}", cut.len());
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(cut.len(), 512);
        let odd = format!("a{long}"); // the 512th byte splits a character
        let cut = excerpt(odd.as_bytes());
        assert_eq!(cut.len(), 511);
        let invalid = [0xff_u8; 600];
        assert!(excerpt(&invalid).len() <= EXCERPT_BYTES);
    }
}

//! What is kept of a server's text: the token's value replaced by `[token]`, sizes bounded.
//!
//! Every reply is built through [`Redactor`], so nothing a server echoes back (a proxy or a
//! debug page that repeats the request headers) reaches the database, a log or the screen
//! with the token in it, and a runaway message cannot fill the database row by row.

use serde_json::Value;

/// Largest server message (or transport error) kept with a row or an attempt, in bytes.
pub const MAX_STORED_MESSAGE: usize = 1024;
/// Largest ticket snapshot kept with a succeeded row, in bytes of JSON text.
pub const MAX_STORED_TICKET: usize = 1024;
/// What replaces the token's value wherever it occurs.
pub const TOKEN_MARK: &str = "[token]";
/// The longest string a cut-down ticket snapshot keeps of each value, in characters.
const CUT_TICKET_STRING: usize = 64;
/// The key a cut-down ticket snapshot gains, so nobody takes it for the whole ticket.
const CUT_TICKET_KEY: &str = "_kapsync_cut";
/// Tokens shorter than this are not searched for: replacing every `t` of a message would
/// make it unreadable, and no real Kapture key is that short.
const MIN_REDACTED_LEN: usize = 6;

/// Replaces the token's value in text from a server.
#[derive(Clone)]
pub(crate) struct Redactor {
    /// The token as sent (without `Basic `), and the form with `/` escaped as JSON may have it.
    forms: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor([redacted])")
    }
}

impl Redactor {
    /// A redactor for `secret`, the bare token text.
    pub(crate) fn new(secret: &str) -> Redactor {
        if secret.len() < MIN_REDACTED_LEN {
            return Redactor { forms: Vec::new() };
        }
        let mut forms = vec![secret.as_bytes().to_vec()];
        let escaped = secret.replace('/', "\\/");
        if escaped != secret {
            forms.push(escaped.into_bytes());
        }
        Redactor { forms }
    }

    /// `body` with every occurrence of the token replaced (nothing copied when there is none).
    /// Applied to the raw body only for the excerpt: replacing inside JSON before parsing
    /// could break its structure.
    pub(crate) fn bytes<'a>(&self, body: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if self.forms.iter().all(|f| !contains(body, f)) {
            return std::borrow::Cow::Borrowed(body);
        }
        std::borrow::Cow::Owned(self.replace(body.to_vec()))
    }

    /// The start of `body` an excerpt can come from, plus room for a token that begins
    /// inside it, so no part of a token survives the cut.
    pub(crate) fn excerpt_window<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        let longest = self.forms.iter().map(Vec::len).max().unwrap_or(0);
        &body[..body.len().min(super::EXCERPT_BYTES + longest)]
    }

    fn replace(&self, body: Vec<u8>) -> Vec<u8> {
        let mut body = body;
        for form in &self.forms {
            if form.is_empty() || !contains(&body, form) {
                continue;
            }
            let mut out = Vec::with_capacity(body.len());
            let mut rest = &body[..];
            while let Some(at) = find(rest, form) {
                out.extend_from_slice(&rest[..at]);
                out.extend_from_slice(TOKEN_MARK.as_bytes());
                rest = &rest[at + form.len()..];
            }
            out.extend_from_slice(rest);
            body = out;
        }
        body
    }

    /// `text` with the token replaced.
    pub(crate) fn text(&self, text: String) -> String {
        if self.forms.iter().all(|f| !contains(text.as_bytes(), f)) {
            return text;
        }
        String::from_utf8(self.replace(text.into_bytes()))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// The ticket snapshot to keep from a success whose whole body is `body`: token replaced,
    /// size capped. Both steps are skipped when the body shows they have nothing to do (the
    /// common case, on the drain's hot path): no token in it, not even behind a `\u` escape,
    /// and a body well within the cap.
    pub(crate) fn ticket(&self, ticket: Value, body: &[u8]) -> Value {
        let hidden = contains(body, b"\\u") || self.forms.iter().any(|f| contains(body, f));
        let ticket = if hidden { self.json(ticket) } else { ticket };
        // Re-serializing can lengthen a number (`1e10` comes back as `10000000000.0`): only a
        // body well inside the cap is trusted without measuring.
        if body.len() <= MAX_STORED_TICKET / 2 {
            ticket
        } else {
            cap_ticket(ticket)
        }
    }

    /// A ticket snapshot with the token replaced in every string (a JSON escape such as
    /// `\u0041` hides it from [`Redactor::bytes`] until the body is parsed).
    pub(crate) fn json(&self, value: Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.text(k), self.json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with a note saying how long it
/// was; short text is returned as it is.
pub fn cap_text(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let note = format!(" [cut: {} bytes in all]", text.len());
    let mut end = max.saturating_sub(note.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text;
    out.truncate(end);
    out.push_str(&note);
    out
}

/// A ticket snapshot whose JSON text is at most [`MAX_STORED_TICKET`] bytes: a larger one
/// keeps its first top-level fields, each string cut to a few dozen characters, and gains
/// `"_kapsync_cut": true`.
pub fn cap_ticket(ticket: Value) -> Value {
    if json_len(&ticket) <= MAX_STORED_TICKET {
        return ticket;
    }
    let mut out = serde_json::Map::new();
    out.insert(CUT_TICKET_KEY.to_owned(), Value::Bool(true));
    if let Value::Object(map) = ticket {
        for (key, value) in map {
            let value = match value {
                Value::String(s) => Value::String(s.chars().take(CUT_TICKET_STRING).collect()),
                scalar @ (Value::Null | Value::Bool(_) | Value::Number(_)) => scalar,
                Value::Array(_) | Value::Object(_) => continue,
            };
            let key: String = key.chars().take(CUT_TICKET_STRING).collect();
            // Key, value, quotes, colon and comma.
            let grows = key.len() + json_len(&value) + 4;
            if json_len(&Value::Object(out.clone())) + grows > MAX_STORED_TICKET {
                break;
            }
            out.insert(key, value);
        }
    }
    Value::Object(out)
}

fn json_len(value: &Value) -> usize {
    serde_json::to_string(value).map_or(usize::MAX, |s| s.len())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_replaced_in_bytes_text_and_json() {
        let r = Redactor::new("ab/cd==");
        let body = br#"{"message":"you sent Basic ab/cd== and ab\/cd=="}"#.to_vec();
        let out = String::from_utf8(r.bytes(&body).into_owned()).unwrap();
        assert_eq!(out, r#"{"message":"you sent Basic [token] and [token]"}"#);
        assert_eq!(r.text("x ab/cd== y".into()), "x [token] y");
        let json: Value = serde_json::from_str(r#"{"k":["\u0061b/cd=="]}"#).unwrap();
        assert_eq!(r.json(json).to_string(), r#"{"k":["[token]"]}"#);
        assert_eq!(r.text("nothing here".into()), "nothing here");
        let short = Redactor::new("t");
        assert_eq!(short.text("a test".into()), "a test");
    }

    #[test]
    fn a_ticket_is_redacted_and_capped_only_when_its_body_needs_it() {
        let r = Redactor::new("SECRET-123");
        let body = br#"{"status":"success","ticket":{"note":"SECRET-123"}}"#;
        let ticket = serde_json::json!({"note": "SECRET-123"});
        assert_eq!(
            r.ticket(ticket, body),
            serde_json::json!({"note": "[token]"})
        );
        let escaped = br#"{"ticket":{"note":"SECRET-123"}}"#;
        let ticket = serde_json::json!({"note": "SECRET-123"});
        assert_eq!(
            r.ticket(ticket, escaped),
            serde_json::json!({"note": "[token]"})
        );
        let big = serde_json::json!({"note": "x".repeat(2000)});
        let body = serde_json::to_vec(&serde_json::json!({"ticket": big})).unwrap();
        let kept = r.ticket(big, &body);
        assert!(kept.to_string().len() <= MAX_STORED_TICKET);
    }

    #[test]
    fn long_text_is_cut_with_a_note_within_the_limit() {
        let long = "é".repeat(3000);
        let cut = cap_text(long, MAX_STORED_MESSAGE);
        assert!(cut.len() <= MAX_STORED_MESSAGE, "{}", cut.len());
        assert!(cut.ends_with(" [cut: 6000 bytes in all]"), "{cut}");
        assert_eq!(cap_text("short".into(), 10), "short");
    }

    #[test]
    fn a_large_ticket_is_cut_to_valid_json_within_the_limit() {
        let mut map = serde_json::Map::new();
        for i in 0..100 {
            map.insert(format!("field{i}"), Value::String("x".repeat(500)));
        }
        map.insert("nested".into(), serde_json::json!({"a": 1}));
        let cut = cap_ticket(Value::Object(map));
        let text = cut.to_string();
        assert!(text.len() <= MAX_STORED_TICKET, "{}", text.len());
        assert_eq!(cut[CUT_TICKET_KEY], Value::Bool(true));
        assert_eq!(cut["field0"].as_str().unwrap().len(), CUT_TICKET_STRING);
        let small = serde_json::json!({"id": "1"});
        assert_eq!(cap_ticket(small.clone()), small);
    }
}

//! Kapture's request rules as the simulator applies them: reading and checking the bodies.
//!
//! An Update Ticket body is read far enough for the ledger (its ticket and digest) before the
//! seeded faults, and checked against Kapture's rules after them; a Get Ticket body is a list of
//! ticket ids.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ledger::Seen;
use crate::kapture::MAX_GET_TICKET_IDS;

/// Parses the body far enough for the ledger; the object is validated later, after the faults.
pub(super) fn parse_update(body: &[u8], seq: u64) -> (Result<Map<String, Value>, String>, Seen) {
    let mut seen = Seen {
        seq,
        ticket_id: None,
        digest: String::new(),
        comment: None,
    };
    let shape = "Invalid Format: the body must be a JSON array holding one ticket object";
    let parsed = match serde_json::from_slice::<Value>(body) {
        Err(_) => Err("Invalid Format: the body is not JSON".to_owned()),
        Ok(Value::Array(mut items)) if items.len() == 1 => match items.pop() {
            Some(Value::Object(object)) => Ok(object),
            _ => Err(shape.to_owned()),
        },
        Ok(Value::Array(items)) => Err(format!("{shape} (it holds {})", items.len())),
        Ok(_) => Err(shape.to_owned()),
    };
    match &parsed {
        Ok(object) => {
            seen.digest = digest_map(object);
            seen.ticket_id = object.get("ticket_id").and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            seen.comment = object
                .get("comment")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        Err(_) => seen.digest = format!("{:x}", Sha256::digest(body)),
    }
    (parsed, seen)
}

/// Kapture's rules for one update object; the error is the message Kapture would give.
pub(super) fn validate(
    object: Map<String, Value>,
    sub_statuses: &[String],
) -> Result<Map<String, Value>, String> {
    match object.get("ticket_id") {
        None | Some(Value::Null) => return Err("ticket_id missing".into()),
        Some(Value::String(s)) if s.trim().is_empty() => return Err("ticket_id missing".into()),
        Some(Value::String(_)) => {}
        Some(_) => return Err("Invalid Format: ticket_id must be a string".into()),
    }
    match object.get("sub_status") {
        None | Some(Value::Null) => return Err("sub_status missing".into()),
        Some(Value::String(s)) if s.is_empty() => return Err("sub_status missing".into()),
        Some(Value::String(s)) if !sub_statuses.contains(s) => {
            return Err(format!(
                "Invalid sub_status: {s} (accepted: {})",
                sub_statuses.join(", ")
            ));
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err("Invalid Format: sub_status must be a string".into()),
    }
    match object.get("callback_time") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() || is_callback_time(s) => {}
        Some(_) => {
            return Err("Invalid Format: callback_time must be yyyy-MM-dd HH:mm:ss".into());
        }
    }
    Ok(object)
}

/// The ids of a Get Ticket body (`{"ticket_ids": "id1,id2"}`); the error is Kapture's message.
pub(super) fn parse_ticket_ids(body: &[u8]) -> Result<Vec<String>, String> {
    let shape = "Invalid Format: the body must be {\"ticket_ids\": \"id1,id2\"}";
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return Err(shape.into());
    };
    let Some(Value::String(list)) = object.get("ticket_ids") else {
        return Err("ticket_ids missing".into());
    };
    let ids: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return Err("ticket_ids missing".into());
    }
    if ids.len() > MAX_GET_TICKET_IDS {
        return Err(format!(
            "Invalid Format: at most {MAX_GET_TICKET_IDS} ticket_ids per request"
        ));
    }
    Ok(ids)
}

/// The digest the ledger records for an update object: SHA-256 (hex) of its compact JSON.
///
/// Tests compute it for the payloads they sent to match them with ledger entries.
pub fn digest(object: &Value) -> String {
    format!("{:x}", Sha256::digest(object.to_string().as_bytes()))
}

fn digest_map(object: &Map<String, Value>) -> String {
    let mut hasher = Sha256::new();
    serde_json::to_writer(HashWriter(&mut hasher), object).expect("a JSON map always serializes");
    format!("{:x}", hasher.finalize())
}

/// Feeds serialized bytes straight into the hasher, without an intermediate string.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `text` is `yyyy-MM-dd HH:mm:ss` naming a real date and time.
pub(super) fn is_callback_time(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &text[range];
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return false;
    };
    (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour < 24
        && minute < 60
        && second < 60
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::SimConfig;

    fn subs() -> Vec<String> {
        SimConfig::default().sub_statuses
    }

    fn check(body: &str) -> Result<Map<String, Value>, String> {
        parse_update(body.as_bytes(), 1)
            .0
            .and_then(|o| validate(o, &subs()))
    }

    #[test]
    fn accepts_a_documented_update() {
        let ok = check(
            r#"[{"ticket_id":"123456789012","sub_status":"CL","comment":"done",
                "callback_time":"2024-02-29 23:59:59","queue":"L1","x_extra":"kept"}]"#,
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn refuses_bad_bodies_with_kapture_messages() {
        let cases = [
            ("not json", "not JSON"),
            (r#"{"ticket_id":"1","sub_status":"P"}"#, "JSON array"),
            ("[]", "JSON array"),
            (
                r#"[{"ticket_id":"1","sub_status":"P"},{"ticket_id":"2","sub_status":"P"}]"#,
                "holds 2",
            ),
            (r#"[{"sub_status":"P"}]"#, "ticket_id missing"),
            (
                r#"[{"ticket_id":"","sub_status":"P"}]"#,
                "ticket_id missing",
            ),
            (
                r#"[{"ticket_id":123456789012,"sub_status":"P"}]"#,
                "must be a string",
            ),
            (r#"[{"ticket_id":"1"}]"#, "sub_status missing"),
            (
                r#"[{"ticket_id":"1","sub_status":"XX"}]"#,
                "Invalid sub_status: XX",
            ),
            (
                r#"[{"ticket_id":"1","sub_status":"P","callback_time":"2024-13-01 10:00:00"}]"#,
                "callback_time",
            ),
            (
                r#"[{"ticket_id":"1","sub_status":"P","callback_time":"2023-02-29 10:00:00"}]"#,
                "callback_time",
            ),
            (
                r#"[{"ticket_id":"1","sub_status":"P","callback_time":"2024-01-01T10:00:00"}]"#,
                "callback_time",
            ),
            (
                r#"[{"ticket_id":"1","sub_status":"P","callback_time":"2024-01-01 10:00"}]"#,
                "callback_time",
            ),
        ];
        for (body, expected) in cases {
            let err = check(body).unwrap_err();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn the_digest_ignores_key_order_and_matches_the_public_helper() {
        let (a, seen_a) = parse_update(br#"[{"ticket_id":"1","sub_status":"P"}]"#, 1);
        let (_, seen_b) = parse_update(br#"[{"sub_status":"P","ticket_id":"1"}]"#, 2);
        assert_eq!(seen_a.digest, seen_b.digest);
        assert_eq!(seen_a.digest, digest(&Value::Object(a.unwrap())));
        assert_eq!(seen_a.digest.len(), 64);
    }
}

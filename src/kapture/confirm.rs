//! What a success keeps of Kapture's answer: the fields that confirm the update, not the whole
//! ticket snapshot (about 2 KB of a real ticket, which a year of nightly history cannot afford).
//!
//! The confirmation is the ticket's id, status, sub-status and queue from the snapshot, and the
//! answer's message. Stored, it keeps only what the sent update does not already say: a field
//! equal to the one sent, and the standard success message, are left out (a field the answer
//! lacks though it was sent is kept as `null`). [`confirmed`] puts the whole confirmation back
//! together for `export`. A confirmed update thus usually costs about 20 bytes
//! (`{"status":"Complete"}`) instead of about 120.

use serde_json::{Map, Value};

use super::EXCERPT_BYTES;

/// The kept fields, each with the snapshot keys it is read from (compared ignoring case,
/// `_` and `-`, so `sub_status`, `subStatus` and `Sub-Status` all match).
const KEPT: [(&str, &[&str]); 4] = [
    ("ticket_id", &["ticketid", "ticketno", "ticketnumber", "id"]),
    ("status", &["status", "ticketstatus"]),
    ("sub_status", &["substatus", "ticketsubstatus"]),
    ("queue", &["queue", "queuename", "queuekey"]),
];

/// Longest kept text of one field, in bytes.
const FIELD_BYTES: usize = 96;

/// The message of Kapture's documented success answer, which a stored confirmation leaves out.
pub const SUCCESS_MESSAGE: &str = "Ticket updated successfully";

/// Reads the kept fields out of `object` (a snapshot or a stored confirmation).
fn kept_fields(object: &Map<String, Value>) -> Map<String, Value> {
    let mut kept = Map::new();
    for (name, aliases) in KEPT {
        // The first alias that names a field wins (`ticket_id` before a bare `id`).
        let found = aliases.iter().find_map(|alias| {
            object
                .iter()
                .find(|(key, _)| same_key(key, alias))
                .map(|(_, value)| value)
        });
        if let Some(value) = found.and_then(short) {
            kept.insert(name.to_owned(), value);
        }
    }
    kept
}

/// What to store of the confirmation `full` (from [`confirmation`]) of the update `sent` (the
/// JSON object text sent): the fields that differ from what was sent, the message unless it
/// is [`SUCCESS_MESSAGE`]. A field sent but absent from the answer is kept as `null`, and so
/// is a missing message, so [`confirmed`] gives `full` back.
pub fn against_sent(full: &Value, sent: &str) -> Value {
    let Value::Object(full) = full else {
        return full.clone();
    };
    let sent = match serde_json::from_str::<Value>(sent) {
        Ok(Value::Object(sent)) => sent,
        _ => return Value::Object(full.clone()),
    };
    let mut kept = Map::new();
    for (name, _) in KEPT {
        match (full.get(name), sent.get(name)) {
            (Some(answered), Some(sent)) if answered == sent => {}
            (Some(answered), _) => {
                kept.insert(name.to_owned(), answered.clone());
            }
            (None, Some(_)) => {
                kept.insert(name.to_owned(), Value::Null);
            }
            (None, None) => {}
        }
    }
    match full.get("message") {
        Some(Value::String(message)) if message == SUCCESS_MESSAGE => {}
        Some(message) => {
            kept.insert("message".to_owned(), message.clone());
        }
        None => {
            kept.insert("message".to_owned(), Value::Null);
        }
    }
    Value::Object(kept)
}

/// The whole confirmation of a success from what was stored (`response`) and the update sent
/// (`sent`, the payload object): the stored fields, the others as sent, the message
/// [`SUCCESS_MESSAGE`] unless stored. A stored whole snapshot (`--keep-responses`: keys other
/// than the confirmation's) gives its confirming fields and no message, as it holds none.
pub fn confirmed(response: &Value, sent: Option<&Map<String, Value>>) -> Value {
    let Value::Object(stored) = response else {
        return Value::Null;
    };
    let compact = stored
        .keys()
        .all(|key| key == "message" || KEPT.iter().any(|(name, _)| name == key));
    if !compact {
        return Value::Object(kept_fields(stored));
    }
    let mut out = Map::new();
    for (name, _) in KEPT {
        let value = match stored.get(name) {
            Some(value) => value.clone(),
            None => sent
                .and_then(|s| s.get(name))
                .cloned()
                .unwrap_or(Value::Null),
        };
        if !value.is_null() {
            out.insert(name.to_owned(), value);
        }
    }
    match stored.get("message") {
        Some(Value::Null) => {}
        Some(message) => {
            out.insert("message".to_owned(), message.clone());
        }
        None => {
            out.insert("message".to_owned(), Value::from(SUCCESS_MESSAGE));
        }
    }
    Value::Object(out)
}

/// The confirmation of a success: `ticket_id`, `status`, `sub_status` and `queue` read from the
/// snapshot (when present) and the answer's `message`, as one JSON object of at most
/// [`EXCERPT_BYTES`] bytes.
pub fn confirmation(snapshot: &Value, message: Option<&str>) -> Value {
    let mut kept = match snapshot {
        Value::Object(ticket) => kept_fields(ticket),
        _ => Map::new(),
    };
    if let Some(message) = message {
        kept.insert(
            "message".to_owned(),
            Value::String(cut(message, FIELD_BYTES)),
        );
    }
    // Five fields of at most 96 bytes (escaping aside) fit; should escaping push past the
    // bound, fields go in this order until it fits.
    for drop in ["message", "queue", "status", "sub_status", "ticket_id"] {
        if Value::Object(kept.clone()).to_string().len() <= EXCERPT_BYTES {
            break;
        }
        kept.remove(drop);
    }
    Value::Object(kept)
}

/// Whether `key` reads `alias` (lowercase, without `_` or `-`) ignoring case, `_` and `-`;
/// compared as it goes, since every success compares every key of its snapshot.
fn same_key(key: &str, alias: &str) -> bool {
    if key.is_ascii() {
        return key
            .bytes()
            .filter(|b| *b != b'_' && *b != b'-')
            .map(|b| b.to_ascii_lowercase())
            .eq(alias.bytes());
    }
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .eq(alias.chars())
}

/// A scalar kept as it is (text cut to [`FIELD_BYTES`]); an object or list as its `name`, or
/// else its compact JSON text, cut; null not at all.
fn short(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Bool(_) | Value::Number(_) => Some(value.clone()),
        Value::String(text) => Some(Value::String(cut(text, FIELD_BYTES))),
        Value::Object(object) => match object.get("name") {
            Some(Value::String(name)) => Some(Value::String(cut(name, FIELD_BYTES))),
            _ => Some(Value::String(cut(&value.to_string(), FIELD_BYTES))),
        },
        Value::Array(_) => Some(Value::String(cut(&value.to_string(), FIELD_BYTES))),
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_match_ignoring_case_underscores_and_dashes() {
        for key in [
            "sub_status",
            "subStatus",
            "Sub-Status",
            "SUB_STATUS",
            "s_u_b-status",
        ] {
            assert!(same_key(key, "substatus"), "{key}");
        }
        for key in [
            "substatus_name",
            "substatu",
            "status",
            "",
            "sub-stätus",
            "SUBSTATUSÉ",
        ] {
            assert!(!same_key(key, "substatus"), "{key}");
        }
        // Not ASCII: compared character by character.
        assert!(same_key("Ticket_İD", "ticketi\u{307}d"));
        assert!(!same_key("Queué", "queue"));
    }

    #[test]
    fn keeps_what_confirms_the_update_and_nothing_else() {
        let snapshot = json!({
            "id": 99, "ticketId": "600000000001", "status": "Pending", "subStatus": "PE",
            "queue": {"id": 4, "name": "Billing"}, "customer": {"email": "a@b.c"},
            "history": ["x", "y"], "comment": "long text"
        });
        let kept = confirmation(&snapshot, Some("Ticket updated successfully"));
        assert_eq!(
            kept,
            json!({
                "ticket_id": "600000000001", "status": "Pending", "sub_status": "PE",
                "queue": "Billing", "message": "Ticket updated successfully"
            })
        );
    }

    #[test]
    fn is_bounded_whatever_the_snapshot_holds() {
        let huge = "é".repeat(10_000);
        let snapshot = json!({
            "ticket_id": huge, "status": huge, "sub_status": "\u{1}".repeat(500),
            "queue": [huge]
        });
        let kept = confirmation(&snapshot, Some(&huge)).to_string();
        assert!(kept.len() <= EXCERPT_BYTES, "{}", kept.len());
        assert!(kept.contains("ticket_id"), "{kept}");
        assert_eq!(confirmation(&json!("not an object"), None), json!({}));
    }

    /// An update as ingest stores it, and Kapture's answer to it (a few of a real ticket's
    /// 2 KB of fields).
    fn sent_and_answer() -> (&'static str, Value) {
        let sent = r#"{"comment":"refund shipped","queue":"Queue 5","sub_status":"CL","ticket_id":"100000000005"}"#;
        let snapshot = json!({
            "ticket_id": "100000000005", "ticketId": "100000000005", "status": "Complete",
            "sub_status": "CL", "subStatusName": "Closed", "queue": "Queue 5",
            "queueKey": "CUST_SUPPORT", "customer": {"name": "Aarav Sharma"},
            "statusHistory": [{"status": "Open"}]
        });
        (sent, snapshot)
    }

    #[test]
    fn a_success_as_sent_stores_only_the_status() {
        let (sent, snapshot) = sent_and_answer();
        let full = confirmation(&snapshot, Some(SUCCESS_MESSAGE));
        let stored = against_sent(&full, sent);
        assert_eq!(stored, json!({"status": "Complete"}));
        assert!(stored.to_string().len() <= 24, "{stored}");
        let sent: Value = serde_json::from_str(sent).unwrap();
        assert_eq!(confirmed(&stored, sent.as_object()), full);
    }

    #[test]
    fn what_differs_from_the_update_is_stored_and_read_back() {
        let (sent, mut snapshot) = sent_and_answer();
        snapshot["queue"] = json!("Escalations");
        snapshot.as_object_mut().unwrap().remove("sub_status");
        let full = confirmation(&snapshot, Some("Updated with warnings"));
        let stored = against_sent(&full, sent);
        assert_eq!(
            stored,
            json!({
                "status": "Complete", "queue": "Escalations", "sub_status": null,
                "message": "Updated with warnings"
            })
        );
        let sent: Value = serde_json::from_str(sent).unwrap();
        assert_eq!(confirmed(&stored, sent.as_object()), full);
        // No message at all is not read back as the standard one.
        let silent = against_sent(&confirmation(&snapshot, None), r#"{"ticket_id":"1"}"#);
        assert_eq!(silent["message"], Value::Null);
        assert_eq!(confirmed(&silent, None).get("message"), None);
    }

    #[test]
    fn a_whole_snapshot_or_an_older_full_confirmation_reads_as_itself() {
        let (sent, snapshot) = sent_and_answer();
        let sent: Value = serde_json::from_str(sent).unwrap();
        // --keep-responses: the snapshot's confirming fields, and no message (it holds none).
        assert_eq!(
            confirmed(&snapshot, sent.as_object()),
            json!({
                "ticket_id": "100000000005", "status": "Complete", "sub_status": "CL",
                "queue": "Queue 5"
            })
        );
        // Stored before confirmations were kept against the update: every field is there.
        let older = json!({
            "ticket_id": "100000000005", "status": "Pending", "sub_status": "P",
            "queue": "Other", "message": "Ticket updated"
        });
        assert_eq!(confirmed(&older, sent.as_object()), older);
    }
}

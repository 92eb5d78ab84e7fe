//! What a success keeps of Kapture's answer: the fields that confirm the update, not the whole
//! ticket snapshot (about 2 KB of a real ticket, which a year of nightly history cannot afford).

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

/// The confirmation of a success: `ticket_id`, `status`, `sub_status` and `queue` read from the
/// snapshot (when present) and the answer's `message`, as one JSON object of at most
/// [`EXCERPT_BYTES`] bytes.
pub fn confirmation(snapshot: &Value, message: Option<&str>) -> Value {
    let mut kept = Map::new();
    if let Value::Object(ticket) = snapshot {
        for (name, aliases) in KEPT {
            // The first alias that names a field wins (`ticket_id` before a bare `id`).
            let found = aliases.iter().find_map(|alias| {
                ticket
                    .iter()
                    .find(|(key, _)| normalized(key) == *alias)
                    .map(|(_, value)| value)
            });
            if let Some(value) = found.and_then(short) {
                kept.insert(name.to_owned(), value);
            }
        }
    }
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

fn normalized(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
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
}

//! JSON text helpers the plan and the row builder share: string escaping and kinds' names.

use serde_json::Value;

/// `text` as a JSON string literal, escaped exactly as `serde_json` escapes it.
pub(super) fn json_string(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    write_json_string(&mut out, text);
    String::from_utf8(out).expect("JSON text built from str is UTF-8")
}

/// Appends `text` as a JSON string literal, escaped exactly as `serde_json` escapes it.
pub(super) fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing to a Vec cannot fail, and serde_json's escaping is the one the payloads
    // have always had.
    serde_json::to_writer(out, text).expect("writing to a Vec cannot fail");
}

/// The kind of a JSON value, as a message names it ("a JSON array").
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

//! CSV mapping: `plan_csv` on arbitrary headers, then `build_csv` on arbitrary fields, with
//! no mapping file and with one using every table.
//!
//! Invariants: no panic; every header is either used or reported ignored; a valid update's
//! payload is exactly what serializing it as a JSON object gives (keys sorted, unique,
//! escaped as serde_json escapes), with a non-empty string ticket id equal to the update's.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use kapsync::ingest::Mapping;
use kapsync::ingest::validate;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Debug, Arbitrary)]
struct Input {
    with_mapping: bool,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn mapped() -> &'static Mapping {
    static MAPPING: OnceLock<Mapping> = OnceLock::new();
    MAPPING.get_or_init(|| {
        Mapping::parse(
            r#"
            [columns]
            comment = "note"
            [values.sub_status]
            solved = "RS"
            "Ärger" = "CL"
            [defaults]
            queue = "Q \"x\""
            callback_time = "2026-01-01T00:00:00"
            z = "last"
            [extra]
            owner = "agent"
            "#,
        )
        .expect("a valid mapping")
    })
}

fuzz_target!(|input: Input| {
    let default = Mapping::default();
    let mapping = if input.with_mapping {
        mapped()
    } else {
        &default
    };
    let headers: Vec<String> = input.headers.iter().map(|h| h.trim().to_owned()).collect();
    let Ok(plan) = mapping.plan_csv(&headers) else {
        return;
    };
    assert!(plan.ignored().len() <= headers.len());
    for row in input.rows.iter().take(8) {
        let fields: Vec<&str> = row.iter().map(String::as_str).collect();
        let Ok(update) = plan.build_csv(&fields) else {
            continue;
        };
        let payload: Value = serde_json::from_str(&update.payload).expect("the payload is JSON");
        assert_eq!(
            payload.to_string(),
            update.payload,
            "serialized as a sorted object"
        );
        let object = payload.as_object().expect("the payload is an object");
        let ticket_id = object["ticket_id"].as_str().expect("ticket_id is a string");
        assert_eq!(ticket_id, update.ticket_id);
        assert!(!ticket_id.trim().is_empty());
        assert!(!object["sub_status"].as_str().unwrap().trim().is_empty());
        assert!(
            object.values().all(Value::is_string),
            "CSV values are strings"
        );
        if let Some(time) = object.get("callback_time").and_then(Value::as_str) {
            assert_eq!(validate::callback_time(time).as_deref(), Ok(time));
        }
    }
});

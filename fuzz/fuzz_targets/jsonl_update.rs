//! JSONL record decoding and the mapping of a record to an update object: `LineReader` over
//! arbitrary bytes, then each line through `Mapping::plan_json().build_json` (with no mapping
//! file and with one using every table).
//!
//! Invariants: no panic; lines are numbered 1, 2, 3, ...; no line keeps more than the limit;
//! a 1-byte `BufReader` gives the same lines; a valid update's payload is a JSON object whose
//! `ticket_id` is the update's non-empty string ticket id, with a non-empty string
//! `sub_status` and a `callback_time`, when there is one, in Kapture's form.
#![no_main]

use std::collections::BTreeSet;
use std::io::BufReader;
use std::sync::OnceLock;

use kapsync::ingest::Mapping;
use kapsync::ingest::jsonl::LineReader;
use kapsync::ingest::validate;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn lines(data: &[u8], capacity: usize, max: usize) -> Vec<(u64, Vec<u8>, Option<u64>)> {
    let mut reader = LineReader::new(BufReader::with_capacity(capacity, data), max);
    let mut out = Vec::new();
    while reader.read_line().expect("reading a slice cannot fail") {
        assert_eq!(
            reader.line(),
            out.len() as u64 + 1,
            "lines are numbered in order"
        );
        assert!(reader.bytes().len() <= max, "kept more than the limit");
        if let Some(bytes) = reader.oversize() {
            assert!(bytes > max as u64);
        }
        out.push((reader.line(), reader.bytes().to_vec(), reader.oversize()));
    }
    assert!(!reader.read_line().unwrap());
    out
}

fn mapped() -> &'static Mapping {
    static MAPPING: OnceLock<Mapping> = OnceLock::new();
    MAPPING.get_or_init(|| {
        Mapping::parse(
            r#"
            [columns]
            ticket_id = "id"
            [values.sub_status]
            solved = "RS"
            open = ""
            [defaults]
            queue = "Q"
            sub_status = "P"
            channel = "legacy"
            [extra]
            owner = "agent"
            "#,
        )
        .expect("a valid mapping")
    })
}

fn check_update(object: serde_json::Map<String, Value>, mapping: &Mapping) {
    let mut ignored = BTreeSet::new();
    let Ok(update) = mapping.plan_json().build_json(object, &mut ignored) else {
        return;
    };
    let payload: Value = serde_json::from_str(&update.payload).expect("the payload is JSON");
    let object = payload.as_object().expect("the payload is an object");
    let ticket_id = object["ticket_id"].as_str().expect("ticket_id is a string");
    assert_eq!(ticket_id, update.ticket_id);
    assert!(!ticket_id.trim().is_empty());
    let sub_status = object["sub_status"]
        .as_str()
        .expect("sub_status is a string");
    assert!(!sub_status.trim().is_empty());
    if let Some(time) = object.get("callback_time") {
        let time = time.as_str().expect("callback_time is a string");
        assert_eq!(validate::callback_time(time).as_deref(), Ok(time));
    }
    assert_eq!(
        payload.to_string(),
        update.payload,
        "serialized as a sorted object"
    );
}

fuzz_target!(|input: &[u8]| {
    let Some((&knob, data)) = input.split_first() else {
        return;
    };
    let max = if knob & 1 == 0 {
        usize::from(knob)
    } else {
        1 << 20
    };
    let large = lines(data, 64 * 1024, max);
    assert_eq!(lines(data, 1, max), large, "1-byte buffer differs");
    for (_, bytes, oversize) in large {
        if oversize.is_some() {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        check_update(object.clone(), &Mapping::default());
        check_update(object, mapped());
    }
});

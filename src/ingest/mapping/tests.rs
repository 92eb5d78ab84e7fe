//! Tests of building update objects from CSV cells and JSONL objects.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::{Invalid, Mapping, Plan, Update};

fn headers(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn payload(update: &Update) -> Value {
    serde_json::from_str(&update.payload).unwrap()
}

#[test]
fn cells_of_a_kapsync_export_lose_the_quote_export_added() {
    let mut names: Vec<&str> = crate::roundtrip::META_COLUMNS.to_vec();
    names.extend(["ticket_id", "sub_status", "comment", "extra.note"]);
    let plan = Mapping::default().plan_csv(&headers(&names)).unwrap();
    let mut cells = vec![""; crate::roundtrip::META_COLUMNS.len()];
    cells.extend(["000000000001", "CL", "'-2 days", "''=x"]);
    let update = plan.build_csv(&cells).unwrap();
    assert_eq!(
        payload(&update),
        json!({"ticket_id": "000000000001", "sub_status": "CL", "comment": "-2 days",
               "note": "'=x"})
    );
    // Any other CSV keeps its cells as they are.
    let plan = Mapping::default()
        .plan_csv(&headers(&["ticket_id", "sub_status", "comment"]))
        .unwrap();
    let update = plan.build_csv(&["000000000001", "CL", "'-2 days"]).unwrap();
    assert_eq!(payload(&update)["comment"], "'-2 days");
}

#[test]
fn mapping_columns_values_defaults_and_extra() {
    let mapping = Mapping::parse(
        r#"
        [columns]
        ticket_id = "Ticket"
        sub_status = "State"
        [values.sub_status]
        Solved = "RS"
        [defaults]
        queue = "Migration"
        sub_status = "P"
        channel = "legacy"
        [extra]
        legacy_priority = "Priority"
        "#,
    )
    .unwrap();
    let plan = mapping
        .plan_csv(&headers(&["Ticket", "State", "Priority", "Notes"]))
        .unwrap();
    assert_eq!(plan.ignored(), ["Notes"]);
    let update = plan
        .build_csv(&["100000000001", " SOLVED ", "high", "x"])
        .unwrap();
    assert_eq!(
        payload(&update),
        json!({
            "ticket_id": "100000000001", "sub_status": "RS", "queue": "Migration",
            "legacy_priority": "high", "channel": "legacy"
        })
    );
    let update = plan.build_csv(&["100000000002", "", "", "x"]).unwrap();
    assert_eq!(
        payload(&update)["sub_status"],
        "P",
        "default fills an empty cell"
    );
    assert!(payload(&update).get("legacy_priority").is_none());
    let update = plan
        .build_csv(&["100000000003", "pending", "", ""])
        .unwrap();
    assert_eq!(
        payload(&update)["sub_status"],
        "pending",
        "unmapped values pass"
    );
}

/// What `build_csv` did before it wrote JSON directly: a serde_json map, serialized.
fn build_csv_via_map(plan: &Plan, fields: &[&str]) -> Result<Update, Invalid> {
    let mut out = Map::new();
    let mut ticket_id = None;
    for (i, target) in plan.targets.iter().enumerate() {
        let raw = target.index.and_then(|i| fields.get(i)).copied();
        let cell = raw.map(|s| Value::String(s.to_owned()));
        plan.put(i, cell, &mut out, &mut ticket_id)?;
    }
    plan.finish(out, ticket_id)
}

#[test]
fn csv_payloads_are_byte_identical_to_a_serialized_map() {
    let mapping = Mapping::parse(
        r#"
        [columns]
        comment = "Zbody"
        [values.sub_status]
        solved = "RS"
        [defaults]
        queue = "Q \"one\""
        Aardvark = "first"
        "zz top" = "last"
        "Ärger" = "umlaut"
        [extra]
        "a\u0001ctl" = "Ctl"
        B = "Upper"
        "#,
    )
    .unwrap();
    let plan = mapping
        .plan_csv(&headers(&[
            "Ticket ID",
            "Status",
            "Zbody",
            "Ctl",
            "Upper",
            "extra.é",
            "extra.~",
            "callback",
        ]))
        .unwrap();
    let rows: [&[&str]; 6] = [
        &[
            "1",
            "solved",
            "a \"quote\" \\ and\nnewline\ttab\u{7f}\u{1}",
            "x",
            "y",
            "é",
            "~",
            "",
        ],
        &["000012", "P", "", "", "", "", "", "2026-01-02T03:04:05"],
        &["3", "", "c", "", "", "", "", ""],
        &["4", "CL", "c", "", "", "", "", "bad"],
        &["", "CL", "c", "", "", "", "", ""],
        &["\u{2028}snow☃", "  ", "", "", "", "", "", ""],
    ];
    for row in rows {
        assert_eq!(
            plan.build_csv(row),
            build_csv_via_map(&plan, row),
            "{row:?}"
        );
    }
    let plain = Mapping::default()
        .plan_csv(&headers(&[
            "ticket_id",
            "sub_status",
            "comment",
            "queue",
            "extra.x",
        ]))
        .unwrap();
    let row = ["5", "CL", "hi", "q", "v"];
    assert_eq!(plain.build_csv(&row), build_csv_via_map(&plain, &row));
    assert_eq!(
        plain.build_csv(&row).unwrap().payload,
        r#"{"comment":"hi","queue":"q","sub_status":"CL","ticket_id":"5","x":"v"}"#
    );
}

#[test]
fn missing_and_empty_required_fields_name_the_field() {
    let plan = Mapping::default()
        .plan_csv(&headers(&["ticket_id", "sub_status"]))
        .unwrap();
    let err = plan.build_csv(&["", "CL"]).unwrap_err();
    assert!(err.reason.contains("ticket_id is empty"), "{}", err.reason);
    let err = plan.build_csv(&["123", "  "]).unwrap_err();
    assert_eq!(err.ticket_id.as_deref(), Some("123"));
    assert!(err.reason.contains("sub_status is empty"), "{}", err.reason);
    let plan = Mapping::default()
        .plan_csv(&headers(&["ticket_id"]))
        .unwrap();
    let err = plan.build_csv(&["123"]).unwrap_err();
    assert!(
        err.reason.contains("sub_status is missing"),
        "{}",
        err.reason
    );
}

#[test]
fn callback_time_is_checked_and_iso_rewritten() {
    let plan = Mapping::default()
        .plan_csv(&headers(&["ticket_id", "sub_status", "Callback Time"]))
        .unwrap();
    let ok = plan.build_csv(&["1", "P", "2026-01-02T03:04:05"]).unwrap();
    assert_eq!(payload(&ok)["callback_time"], "2026-01-02 03:04:05");
    let err = plan.build_csv(&["1", "P", "02/01/2026"]).unwrap_err();
    assert!(err.reason.contains("callback_time"), "{}", err.reason);
    assert!(err.reason.contains("Callback Time"), "{}", err.reason);
}

#[test]
fn json_numbers_become_digits_and_other_keys_pass_through() {
    let plan = Mapping::default().plan_json();
    let object = json!({
        "ticket_id": 123456789012u64, "Sub Status": "CL",
        "priority": 3, "tags": ["a"]
    });
    let mut ignored = BTreeSet::new();
    let update = plan
        .build_json(object.as_object().unwrap().clone(), &mut ignored)
        .unwrap();
    assert_eq!(update.ticket_id, "123456789012");
    assert_eq!(
        payload(&update),
        json!({"ticket_id": "123456789012", "sub_status": "CL", "priority": 3, "tags": ["a"]})
    );
    assert!(ignored.is_empty());
}

#[test]
fn json_bad_field_types_are_invalid() {
    let plan = Mapping::default().plan_json();
    let mut ignored = BTreeSet::new();
    let err = plan
        .build_json(
            json!({"ticket_id": 1.5, "sub_status": "CL"})
                .as_object()
                .unwrap()
                .clone(),
            &mut ignored,
        )
        .unwrap_err();
    assert!(err.reason.contains("whole number"), "{}", err.reason);
    let err = plan
        .build_json(
            json!({"ticket_id": "1", "sub_status": {"a": 1}})
                .as_object()
                .unwrap()
                .clone(),
            &mut ignored,
        )
        .unwrap_err();
    assert!(
        err.reason.contains("sub_status must be text"),
        "{}",
        err.reason
    );
}

#[test]
fn json_empty_and_missing_required_keys_are_told_apart() {
    let plan = Mapping::default().plan_json();
    let mut ignored = BTreeSet::new();
    let reason = |object: Value, ignored: &mut BTreeSet<String>| {
        plan.build_json(object.as_object().unwrap().clone(), ignored)
            .unwrap_err()
            .reason
    };
    assert_eq!(
        reason(json!({"ticket_id": "", "sub_status": "CL"}), &mut ignored),
        "ticket_id is empty"
    );
    assert_eq!(
        reason(json!({"ticket_id": null, "sub_status": "CL"}), &mut ignored),
        "ticket_id is empty"
    );
    assert_eq!(
        reason(json!({"sub_status": "CL"}), &mut ignored),
        "ticket_id is missing"
    );
    assert_eq!(
        reason(json!({"ticket_id": "1"}), &mut ignored),
        "sub_status is missing"
    );
}

#[test]
fn json_with_a_mapping_ignores_unmapped_keys() {
    let mapping =
        Mapping::parse("[columns]\nticket_id = \"number\"\n[extra]\nsource = \"origin\"").unwrap();
    let plan = mapping.plan_json();
    let mut ignored = BTreeSet::new();
    let update = plan
        .build_json(
            json!({"number": "77", "status": "x", "sub_status": "OP", "origin": "zd", "junk": 1})
                .as_object()
                .unwrap()
                .clone(),
            &mut ignored,
        )
        .unwrap();
    assert_eq!(
        payload(&update),
        json!({"ticket_id": "77", "sub_status": "OP", "source": "zd"})
    );
    assert_eq!(ignored.into_iter().collect::<Vec<_>>(), ["junk", "status"]);
}

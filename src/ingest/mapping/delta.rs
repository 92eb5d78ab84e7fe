//! A row's sync key from the plan: `ticket_id` plus the `[delta] key` columns (CSV) or keys
//! (JSONL), digested by [`crate::ingest::delta::sync_key`].

use serde_json::{Map, Value};

use super::plan::Plan;
use crate::ingest::delta::sync_key;

impl Plan {
    /// The sync key of a CSV row whose cells are `fields`.
    pub fn sync_key_csv(&self, ticket_id: &str, fields: &[&str]) -> [u8; 16] {
        sync_key(
            ticket_id,
            self.delta_key
                .iter()
                .map(|(_, index)| index.and_then(|i| fields.get(i).copied()).unwrap_or("")),
        )
    }

    /// The `[delta] key` values of a JSONL object, read before the object is consumed: a
    /// missing or null key counts as empty text, a string as its text, anything else as its
    /// JSON text.
    pub fn delta_values_json(&self, object: &Map<String, Value>) -> Vec<String> {
        self.delta_key
            .iter()
            .map(|(name, _)| match object.get(name) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
            })
            .collect()
    }

    /// The sync key of a JSONL object whose [`Plan::delta_values_json`] are `values`.
    pub fn sync_key_json(&self, ticket_id: &str, values: &[String]) -> [u8; 16] {
        sync_key(ticket_id, values.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::ingest::Mapping;
    use crate::ingest::delta::sync_key;

    #[test]
    fn the_delta_key_joins_the_ticket_id_and_a_missing_column_is_refused() {
        let mapping =
            Mapping::parse("[delta]\nkey = [\"Comment Id\"]\nsupersede = true\n").unwrap();
        assert!(mapping.supersede());
        let headers: Vec<String> = ["ticket_id", "sub_status", "Comment Id"]
            .map(String::from)
            .to_vec();
        let plan = mapping.plan_csv(&headers).unwrap();
        assert!(plan.ignored().is_empty(), "{:?}", plan.ignored());
        assert_eq!(
            plan.sync_key_csv("1", &["1", "CL", "c-9"]),
            sync_key("1", ["c-9"])
        );
        let error = mapping.plan_csv(&headers[..2]).unwrap_err().to_string();
        assert!(
            error.contains("[delta] key names column \"Comment Id\""),
            "{error}"
        );

        let plan = mapping.plan_json();
        let object = json!({"Comment Id": 9}).as_object().unwrap().clone();
        let values = plan.delta_values_json(&object);
        assert_eq!(plan.sync_key_json("1", &values), sync_key("1", ["9"]));
        let values = plan.delta_values_json(&serde_json::Map::new());
        assert_eq!(plan.sync_key_json("1", &values), sync_key("1", [""]));
        assert!(Mapping::parse("[delta]\nkeys = [\"x\"]").is_err());
        let plain = Mapping::default().plan_json();
        let values = plain.delta_values_json(&object);
        assert_eq!(plain.sync_key_json("1", &values), sync_key("1", []));
    }
}

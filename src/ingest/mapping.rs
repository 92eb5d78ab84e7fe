//! The mapping from source columns onto Kapture fields, and the building of one update object.
//!
//! A mapping file (TOML) has four optional tables:
//!
//! ```toml
//! [columns]            # Kapture field = source column
//! ticket_id = "Ticket ID"
//! [values.sub_status]  # source value = Kapture key, matched ignoring case
//! solved = "RS"
//! [defaults]           # field = constant used when the cell is empty or missing
//! queue = "Migration"
//! [extra]              # body key = source column, passed through as an extra key
//! legacy_priority = "Priority"
//! ```
//!
//! Kapture fields not named under `[columns]` are found by name, ignoring case, spaces and
//! underscores, plus common export names (`Id`, `Status`, `Comments`, ...).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest as _;

use super::MappingError;
use super::validate;

/// The fields of Kapture's Update Ticket body that kapsync knows by name.
pub const KAPTURE_FIELDS: [&str; 6] = [
    "ticket_id",
    "sub_status",
    "comment",
    "callback_time",
    "queue",
    "disposition",
];

/// Common export column names (normalized) and the Kapture field they mean.
const ALIASES: [(&str, &str); 6] = [
    ("id", "ticket_id"),
    ("ticket", "ticket_id"),
    ("ticketnumber", "ticket_id"),
    ("status", "sub_status"),
    ("comments", "comment"),
    ("callback", "callback_time"),
];

/// Lower-cases and drops spaces, underscores and hyphens: `Sub Status` == `sub_status`.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The Kapture field a source column or key is named like, by its own name only.
fn field_named(name: &str) -> Option<&'static str> {
    let n = normalize(name);
    KAPTURE_FIELDS.into_iter().find(|f| normalize(f) == n)
}

/// The Kapture field a CSV column means, by its name or a common export alias.
fn field_or_alias(name: &str) -> Option<&'static str> {
    field_named(name).or_else(|| {
        let n = normalize(name);
        ALIASES.iter().find(|(a, _)| *a == n).map(|(_, f)| *f)
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    columns: BTreeMap<String, String>,
    #[serde(default)]
    values: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    defaults: BTreeMap<String, String>,
    #[serde(default)]
    extra: BTreeMap<String, String>,
}

/// A loaded mapping. [`Mapping::default`] is "no mapping file": match columns by name.
#[derive(Debug, Default, Clone)]
pub struct Mapping {
    /// A digest of the mapping text ("" without a file): part of what makes two ingests of
    /// the same content the same.
    fingerprint: String,
    from_file: bool,
    columns: BTreeMap<String, String>,
    values: BTreeMap<String, HashMap<String, String>>,
    defaults: BTreeMap<String, String>,
    extra: BTreeMap<String, String>,
}

impl Mapping {
    /// Reads and checks a mapping file.
    pub fn load(path: &Path) -> Result<Self, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            MappingError(format!(
                "failed to read mapping file {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text)
            .map_err(|e| MappingError(format!("mapping file {}: {}", path.display(), e.0)))
    }

    /// Parses and checks mapping TOML.
    pub fn parse(text: &str) -> Result<Self, MappingError> {
        let file: MappingFile =
            toml::from_str(text).map_err(|e| MappingError(e.to_string().trim().to_owned()))?;
        for field in file.columns.keys() {
            if !KAPTURE_FIELDS.contains(&field.as_str()) {
                return Err(MappingError(format!(
                    "[columns] has {field:?}, which is not a Kapture field ({}); \
                     put pass-through keys under [extra]",
                    KAPTURE_FIELDS.join(", ")
                )));
            }
        }
        for key in file.extra.keys() {
            if KAPTURE_FIELDS.contains(&key.as_str()) {
                return Err(MappingError(format!(
                    "[extra] has {key:?}, which is a Kapture field: map it under [columns]"
                )));
            }
        }
        let values = file
            .values
            .into_iter()
            .map(|(field, map)| {
                let map = map
                    .into_iter()
                    .map(|(from, to)| (from.trim().to_lowercase(), to))
                    .collect();
                (field, map)
            })
            .collect();
        let digest = sha2::Sha256::digest(text.as_bytes());
        Ok(Self {
            fingerprint: digest.iter().take(16).map(|b| format!("{b:02x}")).collect(),
            from_file: true,
            columns: file.columns,
            values,
            defaults: file.defaults,
            extra: file.extra,
        })
    }

    /// A digest of the mapping text, empty without a mapping file.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Resolves the mapping against a CSV header.
    ///
    /// A column the mapping names but the file lacks is an error: the whole file would
    /// otherwise fail row by row.
    pub fn plan_csv(&self, headers: &[String]) -> Result<Plan, MappingError> {
        let mut targets = Vec::new();
        let mut used = vec![false; headers.len()];
        let find = |column: &str, used: &mut Vec<bool>| -> Option<usize> {
            let i = headers.iter().position(|h| h == column)?;
            used[i] = true;
            Some(i)
        };
        let missing = |what: String, column: &str| {
            MappingError(format!(
                "{what} names column {column:?}, which the file does not have (its columns: {})",
                headers.join(", ")
            ))
        };
        for field in KAPTURE_FIELDS {
            let source = match self.columns.get(field) {
                Some(column) => Some(
                    find(column, &mut used)
                        .ok_or_else(|| missing(format!("[columns] {field}"), column))?,
                ),
                None => None,
            };
            targets.push((field.to_owned(), true, source));
        }
        for (key, column) in &self.extra {
            let index =
                find(column, &mut used).ok_or_else(|| missing(format!("[extra] {key}"), column))?;
            targets.push((key.clone(), false, Some(index)));
        }
        // Fields the mapping left out: by exact field name first, then by alias.
        for pass in [
            field_named as fn(&str) -> Option<&'static str>,
            field_or_alias,
        ] {
            for (index, header) in headers.iter().enumerate() {
                if used[index] {
                    continue;
                }
                let Some(field) = pass(header) else { continue };
                let target = targets.iter_mut().find(|t| t.0 == field);
                if let Some(target) = target
                    && target.2.is_none()
                {
                    target.2 = Some(index);
                    used[index] = true;
                }
            }
        }
        let mut ignored = Vec::new();
        for (index, header) in headers.iter().enumerate() {
            if !used[index] {
                ignored.push(header.clone());
            }
        }
        let targets = targets
            .into_iter()
            .map(|(key, kapture, index)| Target {
                source: index.map(|i| headers[i].clone()),
                index,
                values: self.values.get(&key).cloned(),
                default: self.defaults.get(&key).cloned(),
                key,
                kapture,
            })
            .collect();
        Ok(Plan {
            targets,
            extra_defaults: self.extra_defaults(),
            ignored,
            pass_through: false,
        })
    }

    /// The plan for JSONL: keys are looked up per line. Without a mapping file every key that
    /// is not a Kapture field is passed through as an extra key.
    pub fn plan_json(&self) -> Plan {
        let mut targets: Vec<Target> = KAPTURE_FIELDS
            .iter()
            .map(|field| Target {
                key: (*field).to_owned(),
                kapture: true,
                source: self.columns.get(*field).cloned(),
                index: None,
                values: self.values.get(*field).cloned(),
                default: self.defaults.get(*field).cloned(),
            })
            .collect();
        targets.extend(self.extra.iter().map(|(key, column)| Target {
            key: key.clone(),
            kapture: false,
            source: Some(column.clone()),
            index: None,
            values: self.values.get(key).cloned(),
            default: self.defaults.get(key).cloned(),
        }));
        Plan {
            targets,
            extra_defaults: self.extra_defaults(),
            ignored: Vec::new(),
            pass_through: !self.from_file,
        }
    }

    /// `[defaults]` keys that are neither Kapture fields nor `[extra]` keys: constants added
    /// to every row.
    fn extra_defaults(&self) -> Vec<(String, String)> {
        self.defaults
            .iter()
            .filter(|(k, _)| !KAPTURE_FIELDS.contains(&k.as_str()) && !self.extra.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// One key of the update object and where its value comes from.
#[derive(Debug, Clone)]
struct Target {
    key: String,
    kapture: bool,
    /// Source column (CSV header) or key (JSONL).
    source: Option<String>,
    /// CSV column index.
    index: Option<usize>,
    values: Option<HashMap<String, String>>,
    default: Option<String>,
}

/// A mapping resolved for one input file.
#[derive(Debug, Clone)]
pub struct Plan {
    targets: Vec<Target>,
    extra_defaults: Vec<(String, String)>,
    ignored: Vec<String>,
    pass_through: bool,
}

/// A valid row: the ticket and the JSON object to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub ticket_id: String,
    pub payload: String,
}

/// Why a row cannot be sent, naming the field; the ticket id is kept when it was readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub ticket_id: Option<String>,
    pub reason: String,
}

impl Plan {
    /// CSV columns no field uses (reported in the ingest summary).
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// Builds the update object from CSV fields (already checked to be UTF-8).
    pub fn build_csv(&self, fields: &[&str]) -> Result<Update, Invalid> {
        let mut out = Map::new();
        let mut ticket_id = None;
        for target in &self.targets {
            let raw = target.index.and_then(|i| fields.get(i)).copied();
            let cell = raw.map(|s| Value::String(s.to_owned()));
            self.put(target, cell, &mut out, &mut ticket_id)?;
        }
        self.finish(out, ticket_id)
    }

    /// Builds the update object from one JSONL object; `ignored` collects keys not used.
    pub fn build_json(
        &self,
        mut object: Map<String, Value>,
        ignored: &mut BTreeSet<String>,
    ) -> Result<Update, Invalid> {
        let mut out = Map::new();
        let mut ticket_id = None;
        // Explicit sources first, so a key named like a field does not steal a mapped one.
        let mut cells: Vec<Option<Value>> = self
            .targets
            .iter()
            .map(|t| t.source.as_ref().and_then(|s| object.remove(s)))
            .collect();
        let mut rest = Map::new();
        for (key, value) in std::mem::take(&mut object) {
            let slot = field_named(&key).and_then(|field| {
                self.targets
                    .iter()
                    .position(|t| t.key == field && t.source.is_none())
            });
            match slot {
                Some(i) if cells[i].is_none() => cells[i] = Some(value),
                _ if self.pass_through => {
                    rest.insert(key, value);
                }
                _ => {
                    if ignored.len() < 50 {
                        ignored.insert(key);
                    }
                }
            }
        }
        for (target, cell) in self.targets.iter().zip(cells.iter_mut()) {
            self.put(target, cell.take(), &mut out, &mut ticket_id)?;
        }
        for (key, value) in rest {
            out.entry(key).or_insert(value);
        }
        self.finish(out, ticket_id)
    }

    /// Applies the value map, default and field rules to one cell and stores it in `out`.
    fn put(
        &self,
        target: &Target,
        cell: Option<Value>,
        out: &mut Map<String, Value>,
        ticket_id: &mut Option<String>,
    ) -> Result<(), Invalid> {
        let invalid = |ticket_id: &Option<String>, reason: String| Invalid {
            ticket_id: ticket_id.clone(),
            reason,
        };
        let from = || match &target.source {
            Some(source) => format!(" (from {source:?})"),
            None => String::new(),
        };
        let mut value = match cell {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(Value::String(s)),
            Some(Value::Number(n)) if target.kapture => {
                if target.key == "ticket_id" && !(n.is_u64() || n.is_i64()) {
                    return Err(invalid(
                        ticket_id,
                        format!("ticket_id {n} is not a whole number or a string{}", from()),
                    ));
                }
                Some(Value::String(n.to_string()))
            }
            Some(Value::Bool(b)) if target.kapture => Some(Value::String(b.to_string())),
            Some(other) if target.kapture => {
                return Err(invalid(
                    ticket_id,
                    format!(
                        "{} must be text, not a JSON {}{}",
                        target.key,
                        json_kind(&other),
                        from()
                    ),
                ));
            }
            Some(other) => Some(other),
        };
        if let (Some(Value::String(s)), Some(map)) = (&value, &target.values)
            && let Some(mapped) = map.get(&s.trim().to_lowercase())
        {
            value = Some(Value::String(mapped.clone()));
        }
        if value.is_none() {
            value = target.default.clone().map(Value::String);
        }
        match (target.key.as_str(), value) {
            ("ticket_id", Some(Value::String(id))) => {
                *ticket_id = Some(id.clone());
                out.insert(target.key.clone(), Value::String(id));
            }
            ("ticket_id" | "sub_status", None) => {
                let how = if target.source.is_some() {
                    format!("is empty{}", from())
                } else {
                    "is missing: no column maps to it".to_owned()
                };
                return Err(invalid(ticket_id, format!("{} {how}", target.key)));
            }
            ("callback_time", Some(Value::String(time))) => {
                let time = validate::callback_time(&time)
                    .map_err(|reason| invalid(ticket_id, format!("{reason}{}", from())))?;
                out.insert(target.key.clone(), Value::String(time.into_owned()));
            }
            (_, Some(value)) => {
                out.insert(target.key.clone(), value);
            }
            (_, None) => {}
        }
        Ok(())
    }

    fn finish(
        &self,
        mut out: Map<String, Value>,
        ticket_id: Option<String>,
    ) -> Result<Update, Invalid> {
        for (key, value) in &self.extra_defaults {
            out.entry(key.clone())
                .or_insert_with(|| Value::String(value.clone()));
        }
        let ticket_id = ticket_id.ok_or_else(|| Invalid {
            ticket_id: None,
            reason: "ticket_id is missing".into(),
        })?;
        let payload = Value::Object(out).to_string();
        Ok(Update { ticket_id, payload })
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn payload(update: &Update) -> Value {
        serde_json::from_str(&update.payload).unwrap()
    }

    #[test]
    fn columns_are_found_by_name_ignoring_case_spaces_and_underscores() {
        let plan = Mapping::default()
            .plan_csv(&headers(&["Ticket ID", "SUB_STATUS", "Comment", "Agent"]))
            .unwrap();
        assert_eq!(plan.ignored(), ["Agent"]);
        let update = plan
            .build_csv(&["000123456789012", "CL", "done", "bob"])
            .unwrap();
        assert_eq!(update.ticket_id, "000123456789012");
        assert_eq!(
            payload(&update),
            json!({"ticket_id": "000123456789012", "sub_status": "CL", "comment": "done"})
        );
    }

    #[test]
    fn common_export_names_are_aliases_but_exact_names_win() {
        let plan = Mapping::default()
            .plan_csv(&headers(&["Id", "Status", "Comments", "Ticket_Id"]))
            .unwrap();
        let update = plan.build_csv(&["1", "P", "c", "999999999999"]).unwrap();
        assert_eq!(update.ticket_id, "999999999999");
        assert_eq!(plan.ignored(), ["Id"]);
        assert_eq!(payload(&update)["sub_status"], "P");
        assert_eq!(payload(&update)["comment"], "c");
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

    #[test]
    fn mapping_naming_a_missing_column_is_an_error() {
        let mapping = Mapping::parse("[columns]\ncomment = \"Latest Comment\"").unwrap();
        let err = mapping.plan_csv(&headers(&["Id", "Status"])).unwrap_err();
        assert!(err.0.contains("\"Latest Comment\""), "{err}");
        assert!(err.0.contains("Id, Status"), "{err}");
    }

    #[test]
    fn mapping_rejects_unknown_fields_and_tables() {
        assert!(
            Mapping::parse("[columns]\nticketid = \"x\"")
                .unwrap_err()
                .0
                .contains("[extra]")
        );
        assert!(Mapping::parse("[extra]\ncomment = \"x\"").is_err());
        assert!(Mapping::parse("[colums]\nticket_id = \"x\"").is_err());
        assert!(Mapping::parse("[columns]\nticket_id = 5").is_err());
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
    fn json_with_a_mapping_ignores_unmapped_keys() {
        let mapping =
            Mapping::parse("[columns]\nticket_id = \"number\"\n[extra]\nsource = \"origin\"")
                .unwrap();
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
}

//! Resolving a mapping against one input: which CSV column or JSONL key feeds each key.

use std::cell::RefCell;
use std::collections::HashMap;

use super::file::{AllowedValues, LISTED_FIELDS, Mapping};
use super::json::json_string;
use super::names::{field_named, field_or_alias};
use super::tally::{FieldValues, TOP_VALUES, Tally, ValueCount};
use crate::ingest::MappingError;
use crate::ingest::times::TimeRule;
use crate::kapture::KAPTURE_FIELDS;
use crate::roundtrip::{CONFIRMED, EXTRA_PREFIX, RAW_RECORD, is_export_header};

/// One key of the update object while a CSV header is being planned.
#[derive(Debug)]
struct Planned {
    /// The key in the update object.
    key: String,
    /// Whether the key is a Kapture field (rather than an extra, passed-through key).
    kapture: bool,
    /// The CSV column that feeds it, once found.
    index: Option<usize>,
    /// The mapping names its column, so it is not looked for by name (an optional column
    /// the file lacks stays without one).
    named: bool,
}

/// One key of the update object and where its value comes from.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) key: String,
    pub(super) kapture: bool,
    /// Source column (CSV header) or key (JSONL).
    pub(super) source: Option<String>,
    /// CSV column index.
    pub(super) index: Option<usize>,
    pub(super) values: Option<HashMap<String, String>>,
    pub(super) default: Option<String>,
    pub(super) allowed: Option<AllowedValues>,
    /// Its source values are counted for the summary.
    pub(super) tallied: bool,
}

impl Target {
    fn new(mapping: &Mapping, key: String, kapture: bool, source: Option<String>) -> Self {
        Self {
            index: None,
            values: mapping.values.get(&key).cloned(),
            default: mapping.defaults.get(&key).cloned(),
            allowed: kapture
                .then(|| mapping.allowed.get(&key).cloned())
                .flatten(),
            tallied: kapture && LISTED_FIELDS.contains(&key.as_str()),
            source,
            kapture,
            key,
        }
    }
}

/// Where one key of a CSV row's update object comes from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    /// `Plan::targets[i]`, when its cell (or default) has a value.
    Target(usize),
    /// `Plan::extra_defaults[i]`, always.
    Default(usize),
}

/// A mapping resolved for one input file.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(super) targets: Vec<Target>,
    pub(super) extra_defaults: Vec<(String, String)>,
    pub(super) ignored: Vec<String>,
    /// JSONL without a mapping file: keys that are not Kapture fields pass through.
    pub(super) pass_through: bool,
    /// CSV only: every key of the update object as JSON text, in output (sorted) order.
    pub(super) order: Vec<(String, Slot)>,
    /// Whether this plan reads CSV (columns) rather than JSONL (keys).
    pub(super) csv: bool,
    /// The file is a `kapsync export`: its cells were defused for spreadsheets, and the
    /// quote export added is dropped again.
    pub(super) undefuse: bool,
    /// `[delta] key`: each source column (JSONL key) and, for CSV, its index.
    pub(super) delta_key: Vec<(String, Option<usize>)>,
    /// How callback times are read.
    pub(super) time: TimeRule,
    /// The source values of the listed fields seen so far.
    pub(super) tally: RefCell<Tally>,
}

impl Plan {
    /// CSV columns no field uses (reported in the ingest summary).
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }
}

impl Mapping {
    /// Resolves the mapping against a CSV header.
    ///
    /// A column the mapping names but the file lacks is an error: the whole file would
    /// otherwise fail row by row.
    pub fn plan_csv(&self, headers: &[String]) -> Result<Plan, MappingError> {
        let mut planned = Vec::new();
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
            let index = match self.columns.get(field) {
                Some(column) if self.optional.contains(field) => find(column, &mut used),
                Some(column) => Some(
                    find(column, &mut used)
                        .ok_or_else(|| missing(format!("[columns] {field}"), column))?,
                ),
                None => None,
            };
            planned.push(Planned {
                key: field.to_owned(),
                kapture: true,
                index,
                named: self.columns.contains_key(field),
            });
        }
        for (key, column) in &self.extra {
            let index =
                find(column, &mut used).ok_or_else(|| missing(format!("[extra] {key}"), column))?;
            planned.push(Planned {
                key: key.clone(),
                kapture: false,
                index: Some(index),
                named: true,
            });
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
                let target = planned.iter_mut().find(|t| t.key == field);
                if let Some(target) = target
                    && target.index.is_none()
                    && !target.named
                {
                    target.index = Some(index);
                    used[index] = true;
                }
            }
        }
        // `extra.KEY` columns nothing else uses: pass-through keys (the export round trip).
        for (index, header) in headers.iter().enumerate() {
            let Some(key) = header.strip_prefix(EXTRA_PREFIX) else {
                continue;
            };
            if used[index]
                || key.is_empty()
                || KAPTURE_FIELDS.contains(&key)
                || planned.iter().any(|t| t.key == key)
            {
                continue;
            }
            planned.push(Planned {
                key: key.to_owned(),
                kapture: false,
                index: Some(index),
                named: true,
            });
            used[index] = true;
        }
        let mut delta_key = Vec::new();
        for column in &self.delta.key {
            let index = headers
                .iter()
                .position(|h| h == column)
                .ok_or_else(|| missing("[delta] key".to_owned(), column))?;
            used[index] = true;
            delta_key.push((column.clone(), Some(index)));
        }
        // An export's raw_record column is there to fix rows by hand, its confirmed column to
        // read what Kapture confirmed: neither is sent.
        if is_export_header(headers) {
            for (index, header) in headers.iter().enumerate() {
                if header == RAW_RECORD || header == CONFIRMED {
                    used[index] = true;
                }
            }
        }
        refuse_duplicates(headers, &used)?;
        let ignored = headers
            .iter()
            .zip(&used)
            .filter(|(_, used)| !**used)
            .map(|(header, _)| header.clone())
            .collect();
        let targets: Vec<Target> = planned
            .into_iter()
            .map(|p| Target {
                index: p.index,
                ..Target::new(self, p.key, p.kapture, p.index.map(|i| headers[i].clone()))
            })
            .collect();
        let targets_len = targets.len();
        let extra_defaults: Vec<(String, String)> = self
            .extra_defaults()
            .into_iter()
            .filter(|(key, _)| !targets.iter().any(|t| &t.key == key))
            .collect();
        let mut order: Vec<(String, Slot)> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.key.clone(), Slot::Target(i)))
            .chain(
                extra_defaults
                    .iter()
                    .enumerate()
                    .map(|(i, (key, _))| (key.clone(), Slot::Default(i))),
            )
            .collect();
        // The order of a serde_json object's keys (a BTreeMap of Strings: bytewise).
        order.sort_by(|a, b| a.0.cmp(&b.0));
        let order = order
            .into_iter()
            .map(|(key, slot)| (json_string(&key), slot))
            .collect();
        Ok(Plan {
            targets,
            extra_defaults,
            ignored,
            pass_through: false,
            order,
            csv: true,
            undefuse: is_export_header(headers),
            delta_key,
            time: self.time.clone(),
            tally: RefCell::new(Tally::new(targets_len)),
        })
    }

    /// The plan for JSONL: keys are looked up per line. Without a mapping file every key that
    /// is not a Kapture field is passed through as an extra key.
    pub fn plan_json(&self) -> Plan {
        let mut targets: Vec<Target> = KAPTURE_FIELDS
            .iter()
            .map(|field| {
                Target::new(
                    self,
                    (*field).to_owned(),
                    true,
                    self.columns.get(*field).cloned(),
                )
            })
            .collect();
        targets.extend(
            self.extra
                .iter()
                .map(|(key, column)| Target::new(self, key.clone(), false, Some(column.clone()))),
        );
        let targets_len = targets.len();
        Plan {
            targets,
            extra_defaults: self.extra_defaults(),
            ignored: Vec::new(),
            pass_through: !self.from_file,
            order: Vec::new(),
            csv: false,
            undefuse: false,
            delta_key: self.delta.key.iter().map(|k| (k.clone(), None)).collect(),
            time: self.time.clone(),
            tally: RefCell::new(Tally::new(targets_len)),
        }
    }
}

/// A column used by name must be the only one with that name: which of two would be meant
/// cannot be told, and picking one silently loses the other's data.
fn refuse_duplicates(headers: &[String], used: &[bool]) -> Result<(), MappingError> {
    for (index, header) in headers.iter().enumerate() {
        if !used[index] {
            continue;
        }
        let same: Vec<String> = (0..headers.len())
            .filter(|&i| headers[i] == *header)
            .map(|i| (i + 1).to_string())
            .collect();
        if same.len() > 1 {
            return Err(MappingError(format!(
                "the header names column {header:?} more than once (columns {}), and it is \
                 used: rename the copies so each name is unique",
                same.join(", ")
            )));
        }
    }
    Ok(())
}

impl Plan {
    /// The listed fields' source values so far, for the summary.
    pub fn values_report(&self) -> Vec<FieldValues> {
        let tally = self.tally.borrow();
        let mut report = Vec::new();
        for (i, target) in self.targets.iter().enumerate() {
            if !target.tallied || tally.counts[i].is_empty() && tally.overflow[i] == 0 {
                continue;
            }
            let mut values: Vec<(&String, &u64)> = tally.counts[i].iter().collect();
            values.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let listed: Vec<ValueCount> = values
                .iter()
                .take(TOP_VALUES)
                .map(|(value, rows)| {
                    let (sent, mapped) = self.listed_value(target, value);
                    let allowed = target
                        .allowed
                        .as_ref()
                        .is_none_or(|a| a.values.iter().any(|v| v == sent));
                    let note = match (allowed, mapped, &target.values) {
                        (false, _, _) => "not allowed",
                        (true, true, _) => "mapped",
                        (true, false, Some(_)) => "unmapped",
                        (true, false, None) => "as is",
                    };
                    ValueCount {
                        value: (*value).clone(),
                        rows: **rows,
                        sent: allowed.then(|| sent.to_owned()),
                        note,
                    }
                })
                .collect();
            let rest = values.iter().skip(TOP_VALUES);
            report.push(FieldValues {
                field: target.key.clone(),
                column: target.source.clone(),
                checked: target.values.is_some() || target.allowed.is_some(),
                values: listed,
                other_values: rest.clone().count() as u64,
                other_rows: rest.map(|(_, n)| **n).sum::<u64>() + tally.overflow[i],
            });
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::ingest::mapping::Update;

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
    fn extra_prefixed_columns_pass_through_without_a_mapping() {
        let plan = Mapping::default()
            .plan_csv(&headers(&[
                "ticket_id",
                "sub_status",
                "extra.legacy_group",
                "extra.Sub Status",
                "Extra.case",
                "extra.",
                "extra.comment",
            ]))
            .unwrap();
        assert_eq!(
            plan.ignored(),
            ["Extra.case", "extra.", "extra.comment"],
            "wrong case, an empty key and a Kapture field are not passed"
        );
        let update = plan
            .build_csv(&["7", "CL", "Logistics", "OP", "a", "b", "c"])
            .unwrap();
        assert_eq!(
            payload(&update),
            json!({
                "ticket_id": "7", "sub_status": "CL",
                "legacy_group": "Logistics", "Sub Status": "OP"
            })
        );
        let update = plan.build_csv(&["7", "CL", "", " ", "", "", ""]).unwrap();
        assert_eq!(
            payload(&update),
            json!({"ticket_id": "7", "sub_status": "CL"}),
            "empty cells are omitted like other extras"
        );
    }

    #[test]
    fn extra_prefixed_columns_pass_through_unless_a_mapping_uses_them() {
        let mapping = Mapping::parse(
            r#"
            [columns]
            comment = "extra.note"
            [extra]
            owner = "Agent"
            [defaults]
            tier = "gold"
            "#,
        )
        .unwrap();
        let plan = mapping
            .plan_csv(&headers(&[
                "ticket_id",
                "sub_status",
                "extra.note",
                "Agent",
                "extra.owner",
                "extra.tier",
                "extra.region",
            ]))
            .unwrap();
        assert_eq!(plan.ignored(), ["extra.owner"], "[extra] owner wins");
        let update = plan
            .build_csv(&["8", "P", "hello", "bob", "alice", "", "emea"])
            .unwrap();
        assert_eq!(
            payload(&update),
            json!({
                "ticket_id": "8", "sub_status": "P", "comment": "hello",
                "owner": "bob", "tier": "gold", "region": "emea"
            }),
            "a [defaults] value fills an empty extra.KEY cell"
        );
        let update = plan
            .build_csv(&["8", "P", "", "", "", "platinum", ""])
            .unwrap();
        assert_eq!(payload(&update)["tier"], "platinum");
        assert_eq!(
            update.payload.matches("\"tier\"").count(),
            1,
            "{}",
            update.payload
        );
    }

    #[test]
    fn a_used_column_named_twice_is_an_error_an_unused_one_is_ignored() {
        let err = Mapping::default()
            .plan_csv(&headers(&["ticket_id", "sub_status", "comment", "comment"]))
            .unwrap_err();
        assert!(
            err.0.contains("\"comment\" more than once (columns 3, 4)"),
            "{err}"
        );
        let err = Mapping::default()
            .plan_csv(&headers(&["ticket_id", "extra.a", "sub_status", "extra.a"]))
            .unwrap_err();
        assert!(err.0.contains("columns 2, 4"), "{err}");
        let mapping = Mapping::parse("[columns]\nticket_id = \"No\"").unwrap();
        assert!(
            mapping
                .plan_csv(&headers(&["No", "sub_status", "No"]))
                .is_err()
        );
        let plan = Mapping::default()
            .plan_csv(&headers(&[
                "ticket_id",
                "sub_status",
                "Agent",
                "Agent",
                "",
                "",
            ]))
            .unwrap();
        assert_eq!(plan.ignored(), ["Agent", "Agent", "", ""]);
    }

    #[test]
    fn mapping_naming_a_missing_column_is_an_error() {
        let mapping = Mapping::parse("[columns]\ncomment = \"Latest Comment\"").unwrap();
        let err = mapping.plan_csv(&headers(&["Id", "Status"])).unwrap_err();
        assert!(err.0.contains("\"Latest Comment\""), "{err}");
        assert!(err.0.contains("Id, Status"), "{err}");
    }
}

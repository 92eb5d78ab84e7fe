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
//!
//! A CSV column named `extra.KEY` (exactly that prefix, as `kapsync export` writes the extra
//! keys of an update) is passed through as the extra key `KEY`, a string, omitted when the cell
//! is empty like any other extra. That holds with a mapping file too, unless the mapping uses
//! the column elsewhere or already defines the key under `[extra]`; a column whose `KEY` is
//! empty or a Kapture field name is ignored (and reported as such).
//!
//! The update object of a CSV row is written straight into its JSON text, keys sorted as
//! `serde_json` sorts an object's keys, so the payload is byte-for-byte what serializing a
//! `serde_json::Map` would give (and what earlier versions stored), without building one.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest as _;

use super::MappingError;
use super::validate;
use crate::toml_error::TomlError;

/// The fields of Kapture's Update Ticket body that kapsync knows by name.
pub const KAPTURE_FIELDS: [&str; 6] = [
    "ticket_id",
    "sub_status",
    "comment",
    "callback_time",
    "queue",
    "disposition",
];

/// The prefix of a CSV column passed through as an extra key (the rest of its name).
pub const EXTRA_PREFIX: &str = "extra.";

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
            toml::from_str(text).map_err(|e| MappingError(TomlError::new(&e, text).to_string()))?;
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
        // `extra.KEY` columns nothing else uses: pass-through keys (the export round trip).
        for (index, header) in headers.iter().enumerate() {
            let Some(key) = header.strip_prefix(EXTRA_PREFIX) else {
                continue;
            };
            if used[index]
                || key.is_empty()
                || KAPTURE_FIELDS.contains(&key)
                || targets.iter().any(|t| t.0 == key)
            {
                continue;
            }
            targets.push((key.to_owned(), false, Some(index)));
            used[index] = true;
        }
        // A column used by name must be the only one with that name: which of two would be
        // meant cannot be told, and picking one silently loses the other's data.
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
        let mut ignored = Vec::new();
        for (index, header) in headers.iter().enumerate() {
            if !used[index] {
                ignored.push(header.clone());
            }
        }
        let targets: Vec<Target> = targets
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
            undefuse: crate::report::export::is_export_header(headers),
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
            order: Vec::new(),
            csv: false,
            undefuse: false,
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

/// Where one key of a CSV row's update object comes from.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// `Plan::targets[i]`, when its cell (or default) has a value.
    Target(usize),
    /// `Plan::extra_defaults[i]`, always.
    Default(usize),
}

/// A mapping resolved for one input file.
#[derive(Debug, Clone)]
pub struct Plan {
    targets: Vec<Target>,
    extra_defaults: Vec<(String, String)>,
    ignored: Vec<String>,
    pass_through: bool,
    /// CSV only: every key of the update object as JSON text, in output (sorted) order.
    order: Vec<(String, Slot)>,
    /// Whether this plan reads CSV (columns) rather than JSONL (keys).
    csv: bool,
    /// The file is a `kapsync export`: its cells were defused for spreadsheets, and the
    /// quote export added is dropped again.
    undefuse: bool,
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
    ///
    /// Every value is a string, so the JSON text is written directly; the checks and their
    /// order (and so the reason given for a row with several problems) are those of
    /// [`Plan::build_json`].
    pub fn build_csv(&self, fields: &[&str]) -> Result<Update, Invalid> {
        let mut values: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(self.targets.len());
        // The ticket id once known: an invalid row keeps it.
        let mut ticket_id: Option<&str> = None;
        let mut size = 2;
        for target in &self.targets {
            let raw = target.index.and_then(|i| fields.get(i)).copied();
            let value = self.csv_value(target, raw).map_err(|reason| Invalid {
                ticket_id: ticket_id.map(str::to_owned),
                reason,
            })?;
            if let Some(value) = &value {
                if target.key == "ticket_id"
                    && let Cow::Borrowed(id) = value
                {
                    ticket_id = Some(id);
                }
                size += target.key.len() + value.len() + 8;
            }
            values.push(value);
        }
        let ticket_id = ticket_id.ok_or_else(|| Invalid {
            ticket_id: None,
            reason: "ticket_id is missing".into(),
        })?;
        let mut json = Vec::with_capacity(size + 64);
        json.push(b'{');
        let mut first = true;
        for (key, slot) in &self.order {
            let value = match *slot {
                Slot::Target(i) => match &values[i] {
                    Some(value) => value,
                    None => continue,
                },
                Slot::Default(i) => self.extra_defaults[i].1.as_str(),
            };
            if !first {
                json.push(b',');
            }
            first = false;
            json.extend_from_slice(key.as_bytes());
            json.push(b':');
            write_json_string(&mut json, value);
        }
        json.push(b'}');
        let payload = String::from_utf8(json).expect("JSON text built from str is UTF-8");
        Ok(Update {
            ticket_id: ticket_id.to_owned(),
            payload,
        })
    }

    /// The value a CSV cell gives its key, after the value map, the default and the field
    /// rules; `None` leaves the key out. The same rules as [`Plan::put`], for text.
    fn csv_value<'a>(
        &'a self,
        target: &'a Target,
        raw: Option<&'a str>,
    ) -> Result<Option<Cow<'a, str>>, String> {
        let mut value = raw.filter(|s| !s.trim().is_empty());
        if self.undefuse {
            value = value.map(crate::report::export::undefuse);
        }
        if let (Some(s), Some(map)) = (value, &target.values)
            && let Some(mapped) = map.get(&s.trim().to_lowercase())
        {
            value = Some(mapped);
        }
        if value.is_none() {
            value = target.default.as_deref();
        }
        let from = || match &target.source {
            Some(source) => format!(" (from {source:?})"),
            None => String::new(),
        };
        match (target.key.as_str(), value) {
            ("ticket_id" | "sub_status", None) => {
                let how = if target.source.is_some() {
                    format!("is empty{}", from())
                } else {
                    "is missing: no column maps to it".to_owned()
                };
                Err(format!("{} {how}", target.key))
            }
            ("callback_time", Some(time)) => validate::callback_time(time)
                .map(Some)
                .map_err(|reason| format!("{reason}{}", from())),
            (_, value) => Ok(value.map(Cow::Borrowed)),
        }
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
        let present = cell.is_some();
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
                // A JSON key that is there but null or blank is empty; one that is not there
                // is missing (a CSV column, when there is one, is always there).
                let how = if present {
                    format!("is empty{}", from())
                } else if self.csv && target.source.is_none() {
                    "is missing: no column maps to it".to_owned()
                } else {
                    format!("is missing{}", from())
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

/// `text` as a JSON string literal, escaped exactly as `serde_json` escapes it.
fn json_string(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    write_json_string(&mut out, text);
    String::from_utf8(out).expect("JSON text built from str is UTF-8")
}

/// Appends `text` as a JSON string literal, escaped exactly as `serde_json` escapes it.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing to a Vec cannot fail, and serde_json's escaping is the one the payloads
    // have always had.
    serde_json::to_writer(out, text).expect("writing to a Vec cannot fail");
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
    fn cells_of_a_kapsync_export_lose_the_quote_export_added() {
        let mut names: Vec<&str> = crate::report::export::META_COLUMNS.to_vec();
        names.extend(["ticket_id", "sub_status", "comment", "extra.note"]);
        let plan = Mapping::default().plan_csv(&headers(&names)).unwrap();
        let mut cells = vec![""; crate::report::export::META_COLUMNS.len()];
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

    /// What `build_csv` did before it wrote JSON directly: a serde_json map, serialized.
    fn build_csv_via_map(plan: &Plan, fields: &[&str]) -> Result<Update, Invalid> {
        let mut out = Map::new();
        let mut ticket_id = None;
        for target in &plan.targets {
            let raw = target.index.and_then(|i| fields.get(i)).copied();
            let cell = raw.map(|s| Value::String(s.to_owned()));
            plan.put(target, cell, &mut out, &mut ticket_id)?;
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

//! Building one row's update object from CSV cells or a JSONL object, by one set of rules.
//!
//! The update object of a CSV row is written straight into its JSON text, keys sorted as
//! `serde_json` sorts an object's keys, so the payload is byte-for-byte what serializing a
//! `serde_json::Map` would give (and what earlier versions stored), without building one.
//! Both formats pass every text value through [`Plan::rule`].

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::json::{json_kind, write_json_string};
use super::names::field_named;
use super::plan::{Plan, Slot, Target};
use crate::roundtrip::undefuse;

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
    /// The value one source cell gives key `i`, after the value map, the default and the
    /// field rules; `None` leaves the key out. `present` tells an empty cell or key from one
    /// that is not there. CSV cells and JSONL text values both come through here.
    ///
    /// A whitespace-only value counts as empty, in CSV and JSONL alike: it is what an export
    /// writes for "no value", and sending it would overwrite a Kapture field with blanks.
    fn rule<'a>(
        &'a self,
        i: usize,
        present: bool,
        text: Option<&'a str>,
    ) -> Result<Option<Cow<'a, str>>, String> {
        let target = &self.targets[i];
        let mut value = text.filter(|s| !s.trim().is_empty());
        if self.undefuse {
            value = value.map(undefuse);
        }
        if let Some(s) = value {
            if target.tallied {
                self.tally.borrow_mut().record(i, s.trim());
            }
            value = Some(self.listed_value(target, s).0);
        }
        if value.is_none() {
            value = target.default.as_deref();
        }
        let from = || match &target.source {
            Some(source) => format!(" (from {source:?})"),
            None => String::new(),
        };
        if let (Some(value), Some(allowed)) = (value, &target.allowed)
            && !allowed.values.iter().any(|v| v == value)
        {
            return Err(format!(
                "{} {value:?}{} is not allowed: {} lists {}",
                target.key,
                from(),
                allowed.origin,
                allowed.values.join(", ")
            ));
        }
        match (target.key.as_str(), value) {
            ("ticket_id" | "sub_status", None) => {
                // A key that is there but null or blank is empty; one that is not there is
                // missing (a CSV column, when there is one, is always there).
                let how = if present {
                    format!("is empty{}", from())
                } else if self.csv && target.source.is_none() {
                    "is missing: no column maps to it".to_owned()
                } else {
                    format!("is missing{}", from())
                };
                Err(format!("{} {how}", target.key))
            }
            ("callback_time", Some(time)) => self
                .time
                .convert(time)
                .map(Some)
                .map_err(|reason| format!("{reason}{}", from())),
            (_, value) => Ok(value.map(Cow::Borrowed)),
        }
    }

    /// The value `[values]` maps a source value to (matched trimmed, ignoring case), or the
    /// value itself; and whether the table had it.
    pub(super) fn listed_value<'a>(&self, target: &'a Target, value: &'a str) -> (&'a str, bool) {
        match &target.values {
            Some(map) => match map.get(&value.trim().to_lowercase()) {
                Some(mapped) => (mapped, true),
                None => (value, false),
            },
            None => (value, false),
        }
    }

    /// Builds the update object from CSV fields (already checked to be UTF-8).
    ///
    /// Every value is a string, so the JSON text is written directly.
    pub fn build_csv(&self, fields: &[&str]) -> Result<Update, Invalid> {
        let mut values: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(self.targets.len());
        // The ticket id once known: an invalid row keeps it.
        let mut ticket_id: Option<String> = None;
        let mut size = 2;
        for (i, target) in self.targets.iter().enumerate() {
            let raw = target.index.and_then(|i| fields.get(i)).copied();
            let value = self
                .rule(i, target.index.is_some(), raw)
                .map_err(|reason| Invalid {
                    ticket_id: ticket_id.clone(),
                    reason,
                })?;
            if let Some(value) = &value {
                if target.key == "ticket_id" {
                    ticket_id = Some(value.clone().into_owned());
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
        Ok(Update { ticket_id, payload })
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
        for (i, cell) in cells.iter_mut().enumerate() {
            self.put(i, cell.take(), &mut out, &mut ticket_id)?;
        }
        for (key, value) in rest {
            out.entry(key).or_insert(value);
        }
        self.finish(out, ticket_id)
    }

    /// Turns one JSON value into text for [`Plan::rule`] (Kapture fields are text; numbers
    /// and booleans are written as they read) and stores the result in `out`. Extra keys
    /// that are not text pass through as they are.
    pub(super) fn put(
        &self,
        i: usize,
        cell: Option<Value>,
        out: &mut Map<String, Value>,
        ticket_id: &mut Option<String>,
    ) -> Result<(), Invalid> {
        let target = &self.targets[i];
        let invalid = |ticket_id: &Option<String>, reason: String| Invalid {
            ticket_id: ticket_id.clone(),
            reason,
        };
        let from = || match &target.source {
            Some(source) => format!(" (from {source:?})"),
            None => String::new(),
        };
        let present = cell.is_some();
        let text = match cell {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) if target.kapture => {
                // Numbers keep the text they were written with (serde_json's
                // arbitrary_precision): a 30-digit id is sent digit for digit.
                let whole = n.as_str().strip_prefix('-').unwrap_or(n.as_str());
                if target.key == "ticket_id" && !whole.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid(
                        ticket_id,
                        format!("ticket_id {n} is not a whole number or a string{}", from()),
                    ));
                }
                Some(n.to_string())
            }
            Some(Value::Bool(b)) if target.kapture => Some(b.to_string()),
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
            Some(other) => {
                out.insert(target.key.clone(), other);
                return Ok(());
            }
        };
        let value = self
            .rule(i, present, text.as_deref())
            .map_err(|reason| invalid(ticket_id, reason))?;
        if let Some(value) = value {
            let value = value.into_owned();
            if target.key == "ticket_id" {
                *ticket_id = Some(value.clone());
            }
            out.insert(target.key.clone(), Value::String(value));
        }
        Ok(())
    }

    pub(super) fn finish(
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

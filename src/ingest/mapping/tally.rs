//! Counting the source values of the listed fields, and what each became, for the summary.

use std::collections::HashMap;

use serde::Serialize;

use super::plan::Plan;

/// Distinct values counted per field; further values are counted together, keeping memory
/// bounded on a file whose "status" column holds free text.
const MAX_DISTINCT: usize = 10_000;
/// Values listed per field in a summary, most frequent first.
pub const TOP_VALUES: usize = 50;

/// Source values seen per target (only the listed fields' targets count).
#[derive(Debug, Clone, Default)]
pub struct Tally {
    counts: Vec<HashMap<String, u64>>,
    /// Rows whose value came after [`MAX_DISTINCT`] others, per target.
    overflow: Vec<u64>,
}

impl Tally {
    /// A tally for a plan of `targets` keys.
    pub fn new(targets: usize) -> Self {
        Self {
            counts: vec![HashMap::new(); targets],
            overflow: vec![0; targets],
        }
    }

    /// Counts one source value of target `i`.
    pub fn record(&mut self, i: usize, value: &str) {
        let counts = &mut self.counts[i];
        if let Some(n) = counts.get_mut(value) {
            *n += 1;
        } else if counts.len() < MAX_DISTINCT {
            counts.insert(value.to_owned(), 1);
        } else {
            self.overflow[i] += 1;
        }
    }
}

/// One field's source values in a summary.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldValues {
    pub field: String,
    /// The source column or key.
    pub column: Option<String>,
    /// Whether the mapping has a `[values.FIELD]` table or an allowed list for it.
    pub checked: bool,
    /// The most frequent values, at most [`TOP_VALUES`].
    pub values: Vec<ValueCount>,
    /// Distinct values not listed, and their rows.
    pub other_values: u64,
    pub other_rows: u64,
}

/// One distinct source value: how many rows had it and what was sent for it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ValueCount {
    pub value: String,
    pub rows: u64,
    /// The value sent, `None` when it was refused.
    pub sent: Option<String>,
    /// `mapped` (by `[values]`), `unmapped` (a `[values]` table exists but lacks it), `as is`
    /// (no table), or `not allowed`.
    pub note: &'static str,
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

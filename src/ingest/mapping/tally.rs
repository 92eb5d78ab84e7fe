//! Counting the source values of the listed fields, and what each became, for the summary.

use std::collections::HashMap;

use serde::Serialize;

/// Distinct values counted per field; further values are counted together, keeping memory
/// bounded on a file whose "status" column holds free text.
const MAX_DISTINCT: usize = 10_000;
/// Values listed per field in a summary, most frequent first.
pub const TOP_VALUES: usize = 50;

/// Source values seen per target (only the listed fields' targets count).
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub(super) counts: Vec<HashMap<String, u64>>,
    /// Rows whose value came after [`MAX_DISTINCT`] others, per target.
    pub(super) overflow: Vec<u64>,
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

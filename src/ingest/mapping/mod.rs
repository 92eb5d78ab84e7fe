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
//! [delta]              # event exports: these columns join ticket_id in the sync key
//! key = ["Comment Id"]
//! supersede = false    # true: a newer row of a key skips that key's older pending rows
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
//! The pieces: [`file`] reads the mapping file, [`plan`] resolves it against one input (a CSV
//! header or JSONL keys), [`row`] builds one row's update object, and [`names`] matches source
//! names to Kapture fields, and [`tally`] counts the listed fields' source values.

mod delta;
mod file;
mod json;
pub(crate) mod names;
mod plan;
mod row;
mod tally;

pub use file::{Mapping, MappingFileError};
pub use json::json_kind;
pub use plan::Plan;
pub use row::{Invalid, Update};
pub use tally::{FieldValues, TOP_VALUES, ValueCount};

#[cfg(test)]
mod tests;

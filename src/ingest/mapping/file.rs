//! Reading and checking a mapping file (TOML) into a [`Mapping`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::Digest as _;

use crate::ingest::MappingError;
use crate::ingest::times::TimeRule;
use crate::kapture::KAPTURE_FIELDS;
use crate::toml_error::TomlError;

/// The Kapture fields whose values come from a fixed list: they can be limited under
/// `[allowed]`, and their source values are counted for the summary.
pub const LISTED_FIELDS: [&str; 3] = ["sub_status", "queue", "disposition"];

/// A mapping file that cannot be used: each cause is kept typed, as the source.
#[derive(Debug, thiserror::Error)]
pub enum MappingFileError {
    /// The file could not be read.
    #[error("failed to read mapping file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML of the mapping's shape. The cause names the line and column,
    /// never the line itself.
    #[error("failed to parse mapping file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: TomlError,
    },
    /// The file parses but maps something wrongly.
    #[error("failed to use mapping file {path}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: MappingError,
    },
}

impl MappingFileError {
    /// Whether the user can fix this (exit code 2): always, the mapping file is theirs.
    pub fn is_usage(&self) -> bool {
        true
    }
}

/// The file as written. Every table is optional and unknown tables or keys are refused, so a
/// typo is an error rather than a silently ignored setting; a new table is one more field here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    columns: BTreeMap<String, ColumnSpec>,
    #[serde(default)]
    values: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    defaults: BTreeMap<String, String>,
    #[serde(default)]
    extra: BTreeMap<String, String>,
    #[serde(default)]
    delta: DeltaTable,
    #[serde(default)]
    formats: Formats,
    #[serde(default)]
    allowed: Allowed,
    #[serde(default)]
    source: Source,
}

/// `[source]`: how the file is written, when detection is not enough (the flags win).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    encoding: Option<String>,
    delimiter: Option<String>,
}

/// A `[columns]` entry: a column name, or `{ column = "...", optional = true }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ColumnSpec {
    Name(String),
    Table(ColumnTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnTable {
    column: String,
    /// A file without the column still ingests; its rows get no value for the field.
    #[serde(default)]
    optional: bool,
}

/// `[formats]`: how the source writes callback times, and the zone Kapture reads them in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Formats {
    #[serde(default)]
    callback_time: Vec<String>,
    timezone: Option<String>,
}

/// `[allowed]`: the values Kapture accepts for the listed fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Allowed {
    sub_status: Option<Vec<String>>,
    queue: Option<Vec<String>>,
    disposition: Option<Vec<String>>,
}

/// The values a field may take after `[values]` mapping, and where the list was given.
#[derive(Debug, Clone)]
pub(crate) struct AllowedValues {
    pub(crate) values: Vec<String>,
    /// `[allowed] sub_status` or `--sub-statuses`, for the reason of a refused value.
    pub(crate) origin: String,
}

/// `[delta]`: what makes two rows of nightly exports "the same thing" (see `ingest::delta`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeltaTable {
    /// Source columns (CSV) or keys (JSONL) that, with `ticket_id`, identify a row's event.
    #[serde(default)]
    pub(super) key: Vec<String>,
    /// Skip a sync key's older pending rows when a newer one arrives.
    #[serde(default)]
    pub(super) supersede: bool,
}

/// A loaded mapping. [`Mapping::default`] is "no mapping file": match columns by name.
#[derive(Debug, Default, Clone)]
pub struct Mapping {
    /// A digest of the mapping text ("" without a file): part of what makes two ingests of
    /// the same content the same.
    pub(super) fingerprint: String,
    /// The mapping file's name ("" without a file), to name it in messages.
    pub(super) name: String,
    pub(super) from_file: bool,
    /// Kapture field -> source column.
    pub(super) columns: BTreeMap<String, String>,
    /// Key -> (source value, trimmed and lower-cased -> value sent).
    pub(super) values: BTreeMap<String, HashMap<String, String>>,
    pub(super) defaults: BTreeMap<String, String>,
    /// Extra key -> source column.
    pub(super) extra: BTreeMap<String, String>,
    /// `[delta]`: the sync key's columns and whether newer rows supersede pending ones.
    pub(super) delta: DeltaTable,
    /// Fields whose `[columns]` entry is optional.
    pub(super) optional: BTreeSet<String>,
    /// How callback times are read (`[formats]`).
    pub(super) time: TimeRule,
    /// Field -> the values it may take (`[allowed]`, `--sub-statuses`).
    pub(super) allowed: BTreeMap<String, AllowedValues>,
    /// `[source] encoding`, when given.
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// `[source] delimiter`, when given.
    pub delimiter: Option<u8>,
}

impl Mapping {
    /// Reads and checks a mapping file.
    pub fn load(path: &Path) -> Result<Self, MappingFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| MappingFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let file = toml::from_str(&text).map_err(|e| MappingFileError::Parse {
            path: path.to_owned(),
            source: TomlError::new(&e, &text),
        })?;
        Self::check(file, &text)
            .map(|mapping| Self { name, ..mapping })
            .map_err(|source| MappingFileError::Invalid {
                path: path.to_owned(),
                source,
            })
    }

    /// Parses and checks mapping TOML.
    pub fn parse(text: &str) -> Result<Self, MappingError> {
        let file =
            toml::from_str(text).map_err(|e| MappingError(TomlError::new(&e, text).to_string()))?;
        Self::check(file, text)
    }

    /// Checks a parsed mapping file whose text is `text`.
    fn check(file: MappingFile, text: &str) -> Result<Self, MappingError> {
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
        let mut columns = BTreeMap::new();
        let mut optional = BTreeSet::new();
        for (field, spec) in file.columns {
            let column = match spec {
                ColumnSpec::Name(column) => column,
                ColumnSpec::Table(table) => {
                    if table.optional {
                        optional.insert(field.clone());
                    }
                    table.column
                }
            };
            columns.insert(field, column);
        }
        let time = TimeRule::new(file.formats.callback_time, file.formats.timezone.as_deref())
            .map_err(MappingError)?;
        let mut allowed = BTreeMap::new();
        for (field, list) in [
            ("sub_status", file.allowed.sub_status),
            ("queue", file.allowed.queue),
            ("disposition", file.allowed.disposition),
        ] {
            if let Some(values) = list {
                allowed.insert(
                    field.to_owned(),
                    AllowedValues {
                        values,
                        origin: format!("[allowed] {field}"),
                    },
                );
            }
        }
        let encoding = match &file.source.encoding {
            Some(label) => Some(
                crate::ingest::decode::encoding_for_label(label)
                    .map_err(|e| MappingError(format!("[source] encoding: {e}")))?,
            ),
            None => None,
        };
        let delimiter = match &file.source.delimiter {
            Some(value) => Some(
                crate::ingest::delimiter::parse(value)
                    .map_err(|e| MappingError(format!("[source] delimiter: {e}")))?,
            ),
            None => None,
        };
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
            name: String::new(),
            fingerprint: digest.iter().take(16).map(|b| format!("{b:02x}")).collect(),
            from_file: true,
            columns,
            values,
            defaults: file.defaults,
            extra: file.extra,
            delta: file.delta,
            optional,
            time,
            allowed,
            encoding,
            delimiter,
        })
    }

    /// Limits `sub_status` to `values` (from `--sub-statuses`), over any `[allowed]` list.
    pub fn with_sub_statuses(mut self, values: Vec<String>) -> Self {
        self.allowed.insert(
            "sub_status".to_owned(),
            AllowedValues {
                values,
                origin: "--sub-statuses".to_owned(),
            },
        );
        self
    }

    /// The mapping file's name, empty without a file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the mapping names a `[delta] key`: rows are events of their ticket.
    pub fn names_events(&self) -> bool {
        !self.delta.key.is_empty()
    }

    /// Whether the mapping asks for `[delta] supersede = true`.
    pub fn supersede(&self) -> bool {
        self.delta.supersede
    }

    /// A digest of the mapping text, empty without a mapping file.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `[defaults]` keys that are neither Kapture fields nor `[extra]` keys: constants added
    /// to every row.
    pub(super) fn extra_defaults(&self) -> Vec<(String, String)> {
        self.defaults
            .iter()
            .filter(|(k, _)| !KAPTURE_FIELDS.contains(&k.as_str()) && !self.extra.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(Mapping::parse("[allowed]\nsubstatus = [\"P\"]").is_err());
        assert!(Mapping::parse("[formats]\ntimezone = \"Nowhere/Land\"").is_err());
        assert!(Mapping::parse("[columns]\ncomment = { column = \"C\", optinal = true }").is_err());
    }

    #[test]
    fn columns_may_be_optional_and_lists_allowed() {
        let mapping = Mapping::parse(
            r#"
            [columns]
            ticket_id = "Id"
            callback_time = { column = "Follow-up at", optional = true }
            comment = { column = "Note" }
            [allowed]
            sub_status = ["OP", "P"]
            [formats]
            callback_time = ["%d/%m/%Y %H:%M"]
            timezone = "Asia/Kolkata"
            "#,
        )
        .unwrap();
        assert_eq!(mapping.columns["callback_time"], "Follow-up at");
        assert_eq!(mapping.columns["comment"], "Note");
        assert!(mapping.optional.contains("callback_time"));
        assert!(!mapping.optional.contains("comment"));
        assert_eq!(mapping.allowed["sub_status"].values, ["OP", "P"]);
        let mapping = mapping.with_sub_statuses(vec!["CL".into()]);
        assert_eq!(mapping.allowed["sub_status"].origin, "--sub-statuses");
    }

    #[test]
    fn value_keys_are_trimmed_and_lower_cased() {
        let mapping = Mapping::parse("[values.sub_status]\n\" Solved \" = \"RS\"").unwrap();
        assert_eq!(mapping.values["sub_status"]["solved"], "RS");
        assert_eq!(mapping.fingerprint().len(), 32);
        assert_eq!(Mapping::default().fingerprint(), "");
    }
}

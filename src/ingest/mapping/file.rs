//! Reading and checking a mapping file (TOML) into a [`Mapping`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::Digest as _;

use crate::ingest::MappingError;
use crate::kapture::KAPTURE_FIELDS;
use crate::toml_error::TomlError;

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
    columns: BTreeMap<String, String>,
    #[serde(default)]
    values: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    defaults: BTreeMap<String, String>,
    #[serde(default)]
    extra: BTreeMap<String, String>,
    #[serde(default)]
    delta: DeltaTable,
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
}

impl Mapping {
    /// Reads and checks a mapping file.
    pub fn load(path: &Path) -> Result<Self, MappingFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| MappingFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file = toml::from_str(&text).map_err(|e| MappingFileError::Parse {
            path: path.to_owned(),
            source: TomlError::new(&e, &text),
        })?;
        Self::check(file, &text).map_err(|source| MappingFileError::Invalid {
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
            delta: file.delta,
        })
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
    }

    #[test]
    fn value_keys_are_trimmed_and_lower_cased() {
        let mapping = Mapping::parse("[values.sub_status]\n\" Solved \" = \"RS\"").unwrap();
        assert_eq!(mapping.values["sub_status"]["solved"], "RS");
        assert_eq!(mapping.fingerprint().len(), 32);
        assert_eq!(Mapping::default().fingerprint(), "");
    }
}

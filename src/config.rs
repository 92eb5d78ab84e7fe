//! Settings: defaults < kapsync.toml < its `[profiles.NAME]` < environment < flags, merged once.
//!
//! clap already folds each `KAPSYNC_*` variable into its flag's `Option`, so the merge here is
//! "the flag-or-environment value if given, else the profile's, else the file's top level,
//! else the default". The result is validated once into the settings the commands trust.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{GlobalArgs, IngestOptions, RunOptions};
use crate::engine::{
    DEFAULT_BURST, DEFAULT_CANARY, DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, DEFAULT_RATE,
    DEFAULT_UNREACHABLE_TIMEOUT,
};
use crate::ingest::DEFAULT_MAX_RECORD_BYTES;
use crate::kapture::DEFAULT_TIMEOUT_SECS;
use crate::store::DEFAULT_DB;
use crate::toml_error::TomlError;

/// Settings file read from the working directory when it exists.
pub const DEFAULT_CONFIG_FILE: &str = "kapsync.toml";

/// A settings file or value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read settings file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys. The cause names the line and column,
    /// never the line itself.
    #[error("failed to parse settings file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: TomlError,
    },
    /// A value is out of range.
    #[error("invalid setting {name}: {message}")]
    Invalid { name: &'static str, message: String },
    /// `--profile` or `KAPSYNC_PROFILE` names a profile the settings file does not have.
    #[error(
        "no profile {name:?} in {path}: {}",
        match known.as_slice() {
            [] => "it has no [profiles.NAME] tables".to_owned(),
            known => format!("its profiles are {}", known.join(", ")),
        }
    )]
    UnknownProfile {
        name: String,
        path: PathBuf,
        known: Vec<String>,
    },
    /// A profile is asked for, but there is no settings file to hold it.
    #[error(
        "no profile {name:?}: there is no settings file ({DEFAULT_CONFIG_FILE} here, or pass \
         --config PATH)"
    )]
    NoSettingsFile { name: String },
}

impl ConfigError {
    /// Whether the user can fix this by changing the command or the file (exit code 2): every
    /// settings error is.
    pub fn is_usage(&self) -> bool {
        true
    }
}

/// The contents of kapsync.toml. Every key is optional; unknown keys are an error so a typo
/// does not pass silently. `[profiles.NAME]` tables hold the same keys (except `profiles`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub db: Option<PathBuf>,
    pub mapping: Option<PathBuf>,
    pub max_record_bytes: Option<u64>,
    pub subdomain: Option<String>,
    pub base_url: Option<String>,
    pub token_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "rate_from_toml")]
    pub rate: Option<f64>,
    pub burst: Option<u32>,
    pub concurrency: Option<u32>,
    pub max_attempts: Option<u32>,
    pub timeout: Option<u64>,
    pub max_duration: Option<String>,
    pub unreachable_timeout: Option<String>,
    pub canary: Option<u32>,
    /// Named sets of settings, chosen with `--profile NAME` or `KAPSYNC_PROFILE`.
    #[serde(default)]
    pub profiles: BTreeMap<String, FileConfig>,
    /// The file these settings came from (not a key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `rate = 5` and `rate = 0.5` both: TOML tells integers from floats.
fn rate_from_toml<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
    }
    Ok(match Option::<Number>::deserialize(d)? {
        None => None,
        Some(Number::Int(n)) => Some(n as f64),
        Some(Number::Float(f)) => Some(f),
    })
}

impl FileConfig {
    /// Reads the settings file named by `--config`, or `./kapsync.toml` when it exists, and
    /// lays the named profile over its top level.
    ///
    /// Relative paths inside the file are taken relative to the file's directory.
    pub fn load(explicit: Option<&Path>, profile: Option<&str>) -> Result<Self, ConfigError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                if !default.exists() {
                    return match profile {
                        Some(name) => Err(ConfigError::NoSettingsFile { name: name.into() }),
                        None => Ok(Self::default()),
                    };
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            source: TomlError::new(&e, &text),
        })?;
        config.source = Some(path.clone());
        let base = path.parent().unwrap_or(Path::new(""));
        config.relative_to(base);
        for (name, table) in &mut config.profiles {
            if !table.profiles.is_empty() {
                return Err(ConfigError::Invalid {
                    name: "profiles",
                    message: format!(
                        "[profiles.{name}] holds profiles of its own in {}: profiles do not nest",
                        path.display()
                    ),
                });
            }
            table.relative_to(base);
        }
        match profile {
            None => Ok(config),
            Some(name) => match config.profiles.remove(name) {
                Some(table) => Ok(table.over(config)),
                None => Err(ConfigError::UnknownProfile {
                    name: name.to_owned(),
                    path,
                    known: config.profiles.into_keys().collect(),
                }),
            },
        }
    }

    /// Makes relative paths relative to `base`, the settings file's directory.
    fn relative_to(&mut self, base: &Path) {
        for slot in [&mut self.db, &mut self.mapping, &mut self.token_file] {
            if let Some(p) = slot.as_mut()
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        }
    }

    /// These settings laid over `base`: each key set here wins. The target is one setting: a
    /// profile that names a subdomain or a base URL replaces both of the base's.
    fn over(self, base: FileConfig) -> FileConfig {
        // No `..`: a new setting must be added here, or this stops compiling.
        let FileConfig {
            db,
            mapping,
            max_record_bytes,
            subdomain,
            base_url,
            token_file,
            rate,
            burst,
            concurrency,
            max_attempts,
            timeout,
            max_duration,
            unreachable_timeout,
            canary,
            profiles: _,
            source: _,
        } = self;
        let (subdomain, base_url) = if subdomain.is_some() || base_url.is_some() {
            (subdomain, base_url)
        } else {
            (base.subdomain, base.base_url)
        };
        FileConfig {
            db: db.or(base.db),
            mapping: mapping.or(base.mapping),
            max_record_bytes: max_record_bytes.or(base.max_record_bytes),
            subdomain,
            base_url,
            token_file: token_file.or(base.token_file),
            rate: rate.or(base.rate),
            burst: burst.or(base.burst),
            concurrency: concurrency.or(base.concurrency),
            max_attempts: max_attempts.or(base.max_attempts),
            timeout: timeout.or(base.timeout),
            max_duration: max_duration.or(base.max_duration),
            unreachable_timeout: unreachable_timeout.or(base.unreachable_timeout),
            canary: canary.or(base.canary),
            profiles: BTreeMap::new(),
            source: base.source,
        }
    }
}

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The SQLite database file.
    pub db: PathBuf,
    /// Whether progress may be drawn at all.
    pub progress: bool,
    /// The active `[profiles.NAME]`, from `--profile` or `KAPSYNC_PROFILE`.
    pub profile: Option<String>,
    /// Whether `--db` or `KAPSYNC_DB` named the database (rather than a file or the default).
    pub db_given: bool,
    /// The settings file named by `--config` or `KAPSYNC_CONFIG`, if any.
    pub config_given: Option<PathBuf>,
    file: std::sync::Arc<FileConfig>,
}

impl Settings {
    /// Merges the global flags over the settings file and the chosen profile.
    pub fn resolve(global: &GlobalArgs) -> Result<Self, ConfigError> {
        let profile = global.profile.clone().filter(|p| !p.is_empty());
        let file = FileConfig::load(global.config.as_deref(), profile.as_deref())?;
        Ok(Self::merge(global, profile, file))
    }

    /// The merge itself, apart from reading the file.
    fn merge(global: &GlobalArgs, profile: Option<String>, file: FileConfig) -> Self {
        let db = global
            .db
            .clone()
            .or_else(|| file.db.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DB));
        Self {
            db,
            progress: !global.no_progress,
            profile,
            db_given: global.db.is_some(),
            config_given: global.config.clone(),
            file: std::sync::Arc::new(file),
        }
    }

    /// The start of a command that reaches these same settings when pasted: `kapsync` and only
    /// the parts that are not the defaults, each quoted for the shell when it needs it, e.g.
    /// `kapsync --db nightly.db --profile acme`. Hints append the command and its flags.
    ///
    /// `--db` is included when a flag or `KAPSYNC_DB` chose the database: a hint may be pasted
    /// into a shell (or a cron line) without that variable. A database named by the settings
    /// file or the profile comes back with `--config` and `--profile`.
    pub fn hint_prefix(&self) -> String {
        let mut out = String::from("kapsync");
        let mut push = |flag: &str, value: &str| {
            out.push_str(&format!(" {flag} {}", crate::quote::shell_word(value)));
        };
        if self.db_given {
            push("--db", &self.db.to_string_lossy());
        }
        if let Some(config) = &self.config_given {
            push("--config", &config.to_string_lossy());
        }
        if let Some(profile) = &self.profile {
            push("--profile", profile);
        }
        out
    }

    /// The same settings with another database file, which hints then name.
    pub fn with_db(&self, db: PathBuf) -> Self {
        Self {
            db,
            db_given: true,
            ..self.clone()
        }
    }

    /// Resolves the ingest settings.
    pub fn ingest(&self, options: &IngestOptions) -> Result<IngestSettings, ConfigError> {
        let max_record_bytes = options
            .max_record_bytes
            .or(self.file.max_record_bytes)
            .unwrap_or(DEFAULT_MAX_RECORD_BYTES);
        if max_record_bytes == 0 {
            return Err(ConfigError::Invalid {
                name: "max-record-bytes",
                message: "must be at least 1".into(),
            });
        }
        Ok(IngestSettings {
            mapping: options
                .mapping
                .clone()
                .or_else(|| self.file.mapping.clone()),
            max_record_bytes,
        })
    }

    /// Resolves the run settings.
    pub fn run(&self, options: &RunOptions) -> Result<RunSettings, ConfigError> {
        let file = &self.file;
        let positive = |name: &'static str, value: u32| {
            if value == 0 {
                Err(ConfigError::Invalid {
                    name,
                    message: "must be at least 1".into(),
                })
            } else {
                Ok(value)
            }
        };
        let (subdomain, base_url, target_origin) = match (&options.subdomain, &options.base_url) {
            (None, None) => (
                file.subdomain.clone(),
                file.base_url.clone(),
                match &file.source {
                    Some(path) if file.subdomain.is_some() || file.base_url.is_some() => {
                        match &self.profile {
                            Some(name) => {
                                format!("settings file {} (profile {name})", path.display())
                            }
                            None => format!("settings file {}", path.display()),
                        }
                    }
                    _ => "nowhere".to_owned(),
                },
            ),
            (flag_sub, flag_url) => (
                flag_sub.clone(),
                flag_url.clone(),
                "the command line or KAPSYNC_* environment".to_owned(),
            ),
        };
        let max_duration = match (options.max_duration, &file.max_duration) {
            (Some(d), _) => Some(d),
            (None, Some(text)) => {
                Some(
                    crate::cli::parse_duration(text).map_err(|message| ConfigError::Invalid {
                        name: "max_duration",
                        message,
                    })?,
                )
            }
            (None, None) => None,
        };
        let unreachable_timeout = match (options.unreachable_timeout, &file.unreachable_timeout) {
            (Some(d), _) => d,
            (None, Some(text)) => {
                crate::cli::parse_duration(text).map_err(|message| ConfigError::Invalid {
                    name: "unreachable_timeout",
                    message,
                })?
            }
            (None, None) => DEFAULT_UNREACHABLE_TIMEOUT,
        };
        let rate = options.rate.or(file.rate).unwrap_or(DEFAULT_RATE);
        if !rate.is_finite() || rate < 0.0 {
            return Err(ConfigError::Invalid {
                name: "rate",
                message: "must be a number of requests per second, 0 or more".into(),
            });
        }
        let timeout = options
            .timeout
            .or(file.timeout)
            .unwrap_or(DEFAULT_TIMEOUT_SECS);
        if timeout == 0 {
            return Err(ConfigError::Invalid {
                name: "timeout",
                message: "must be at least 1 second".into(),
            });
        }
        Ok(RunSettings {
            subdomain,
            base_url,
            target_origin,
            proxy: options.proxy.clone(),
            token_file: options
                .token_file
                .clone()
                .or_else(|| file.token_file.clone()),
            rate,
            burst: positive(
                "burst",
                options.burst.or(file.burst).unwrap_or(DEFAULT_BURST),
            )?,
            concurrency: positive(
                "concurrency",
                options
                    .concurrency
                    .or(file.concurrency)
                    .unwrap_or(DEFAULT_CONCURRENCY),
            )?,
            max_attempts: positive(
                "max-attempts",
                options
                    .max_attempts
                    .or(file.max_attempts)
                    .unwrap_or(DEFAULT_MAX_ATTEMPTS),
            )?,
            timeout: Duration::from_secs(timeout),
            max_duration,
            unreachable_timeout,
            canary: options.canary.or(file.canary).unwrap_or(DEFAULT_CANARY),
            dry_run: options.dry_run,
            retarget: options.retarget,
            keep_responses: options.keep_responses,
        })
    }
}

/// Resolved ingest settings.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Mapping file, if any.
    pub mapping: Option<PathBuf>,
    /// Largest accepted record.
    pub max_record_bytes: u64,
}

/// Resolved run settings. The token itself is not here: it is read only where it is used.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub subdomain: Option<String>,
    pub base_url: Option<String>,
    /// Where the subdomain or base URL came from, for the line that says where requests go.
    pub target_origin: String,
    /// `--proxy`, if given.
    pub proxy: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Requests per second; 0 means no limit.
    pub rate: f64,
    pub burst: u32,
    pub concurrency: u32,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub max_duration: Option<Duration>,
    /// How long Kapture may be unreachable before the run stops (exit 6).
    pub unreachable_timeout: Duration,
    /// Answers the canary looks at; 0 turns it off.
    pub canary: u32,
    pub dry_run: bool,
    /// Move the database to the configured target.
    pub retarget: bool,
    /// Keep whole ticket snapshots of successes.
    pub keep_responses: bool,
}

#[cfg(test)]
mod tests;

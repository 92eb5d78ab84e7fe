//! Settings: built-in defaults < kapsync.toml < environment < flags, merged once and validated.
//!
//! clap already folds each `KAPSYNC_*` variable into its flag's `Option`, so the merge here is
//! "the flag-or-environment value if given, else the file's, else the default".

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{GlobalArgs, IngestOptions, RunOptions};
use crate::engine::{DEFAULT_BURST, DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, DEFAULT_RATE};
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
}

impl ConfigError {
    /// Whether the user can fix this by changing the command or the file (exit code 2): every
    /// settings error is.
    pub fn is_usage(&self) -> bool {
        true
    }
}

/// The contents of kapsync.toml. Every key is optional; unknown keys are an error so a typo
/// does not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub db: Option<PathBuf>,
    pub mapping: Option<PathBuf>,
    pub max_record_bytes: Option<u64>,
    pub subdomain: Option<String>,
    pub base_url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub rate: Option<u32>,
    pub burst: Option<u32>,
    pub concurrency: Option<u32>,
    pub max_attempts: Option<u32>,
    pub timeout: Option<u64>,
    pub max_duration: Option<String>,
}

impl FileConfig {
    /// Reads the settings file named by `--config`, or `./kapsync.toml` when it exists.
    ///
    /// Relative paths inside the file are taken relative to the file's directory.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                if !default.exists() {
                    return Ok(Self::default());
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
        let base = path.parent().unwrap_or(Path::new(""));
        for slot in [&mut config.db, &mut config.mapping, &mut config.token_file] {
            if let Some(p) = slot.as_mut()
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }
}

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The SQLite database file.
    pub db: PathBuf,
    /// Whether progress may be drawn at all.
    pub progress: bool,
    file: std::sync::Arc<FileConfig>,
}

impl Settings {
    /// Merges the global flags over the settings file.
    pub fn resolve(global: &GlobalArgs) -> Result<Self, ConfigError> {
        let file = FileConfig::load(global.config.as_deref())?;
        let db = global
            .db
            .clone()
            .or_else(|| file.db.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DB));
        Ok(Self {
            db,
            progress: !global.no_progress,
            file: std::sync::Arc::new(file),
        })
    }

    /// The same settings with another database file.
    pub fn with_db(&self, db: PathBuf) -> Self {
        Self { db, ..self.clone() }
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
        let (subdomain, base_url) = match (&options.subdomain, &options.base_url) {
            (None, None) => (file.subdomain.clone(), file.base_url.clone()),
            (flag_sub, flag_url) => (flag_sub.clone(), flag_url.clone()),
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
            token_file: options
                .token_file
                .clone()
                .or_else(|| file.token_file.clone()),
            rate: options.rate.or(file.rate).unwrap_or(DEFAULT_RATE),
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
    pub token_file: Option<PathBuf>,
    /// Requests per second; 0 means no limit.
    pub rate: u32,
    pub burst: u32,
    pub concurrency: u32,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub max_duration: Option<Duration>,
    pub dry_run: bool,
    /// Move the database to the configured target.
    pub retarget: bool,
    /// Keep whole ticket snapshots of successes.
    pub keep_responses: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_config_rejects_unknown_keys() {
        let err = toml::from_str::<FileConfig>("rat = 5").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let file = FileConfig {
            rate: Some(9),
            concurrency: Some(3),
            ..FileConfig::default()
        };
        let settings = Settings {
            db: PathBuf::from("x.db"),
            progress: false,
            file: std::sync::Arc::new(file),
        };
        let options = RunOptions {
            subdomain: None,
            base_url: None,
            token_file: None,
            rate: Some(2),
            burst: None,
            concurrency: None,
            max_attempts: None,
            timeout: None,
            max_duration: None,
            dry_run: false,
            retarget: false,
            keep_responses: false,
        };
        let run = settings.run(&options).unwrap();
        assert_eq!(run.rate, 2);
        assert_eq!(run.concurrency, 3);
        assert_eq!(run.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(run.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
    }
}

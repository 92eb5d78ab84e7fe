//! Which Kapture a drain sends to: the configured target checked against the one the database
//! belongs to, which is recorded once Kapture accepted a request and moved only with
//! `--retarget`.

use crate::config::RunSettings;
use crate::engine::DrainReport;
use crate::exit::UsageError;
use crate::kapture::{Target, TargetError};
use crate::store::{Store, TargetBinding};

/// The target to send to, and what to record in the database before the first request.
#[derive(Debug)]
pub struct Destination {
    pub target: Target,
    record: Option<Record>,
}

/// A binding to write: the target as given.
#[derive(Debug)]
struct Record {
    kind: &'static str,
    value: String,
    retarget: bool,
}

/// Resolves the target: the configured one (flags, environment, kapsync.toml), else the one
/// recorded in the database. A configured target other than the recorded one is refused unless
/// `retarget` is set.
pub async fn resolve(
    store: &Store,
    resolved: &RunSettings,
    prefix: &str,
) -> anyhow::Result<Destination> {
    fn given(value: &Option<String>) -> Option<&str> {
        value.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let configured = match (given(&resolved.subdomain), given(&resolved.base_url)) {
        (_, Some(url)) => Some(("base_url", url)),
        (Some(name), None) => Some(("subdomain", name)),
        (None, None) => None,
    };
    let binding = store.target_binding().await?;
    let Some((kind, value)) = configured else {
        if resolved.retarget {
            return Err(UsageError(
                "--retarget needs the new target: pass --subdomain NAME or --base-url URL".into(),
            )
            .into());
        }
        let Some(binding) = binding else {
            return Err(TargetError::Missing.into());
        };
        return Ok(Destination {
            target: bound_target(&binding)?,
            record: None,
        });
    };
    let target = Target::resolve(
        (kind == "subdomain").then_some(value),
        (kind == "base_url").then_some(value),
    )?;
    let record = |retarget| {
        Some(Record {
            kind,
            value: value.to_owned(),
            retarget,
        })
    };
    let record = match binding {
        None => record(false),
        Some(b) if b.base_url == target.base_url() => None,
        Some(_) if resolved.retarget => record(true),
        Some(b) => {
            return Err(UsageError(format!(
                "this database belongs to {} (recorded {}{}), not {}: every row it holds was \
                 compared with what went there. Leave out --subdomain/--base-url to send there, \
                 use another --db for another Kapture, or move it on purpose with \
                 `{prefix} run --retarget --{} {}`",
                b.base_url,
                b.recorded_at,
                if b.retarget { ", by --retarget" } else { "" },
                target.base_url(),
                kind.replace('_', "-"),
                crate::report::text::shell_word(value),
            ))
            .into());
        }
    };
    Ok(Destination { target, record })
}

/// The target a binding names.
fn bound_target(binding: &TargetBinding) -> anyhow::Result<Target> {
    let value = binding.value.as_str();
    Ok(match binding.kind.as_str() {
        "subdomain" => Target::resolve(Some(value), None)?,
        _ => Target::resolve(None, Some(value))?,
    })
}

impl Destination {
    /// Before the first request: a `--retarget` is recorded at once (it was asked for).
    pub async fn record_retarget(&self, store: &Store) -> anyhow::Result<()> {
        match &self.record {
            Some(record) if record.retarget => self.write(store, record).await,
            _ => Ok(()),
        }
    }

    /// After a drain: a database's first target is recorded once Kapture accepted a request
    /// there, so a mistyped subdomain that only ever answered 404 does not claim the database.
    pub async fn record_first(&self, store: &Store, reports: &[DrainReport]) -> anyhow::Result<()> {
        match &self.record {
            Some(record) if !record.retarget && reports.iter().any(|r| r.succeeded > 0) => {
                self.write(store, record).await
            }
            _ => Ok(()),
        }
    }

    async fn write(&self, store: &Store, record: &Record) -> anyhow::Result<()> {
        store
            .bind_target(
                record.kind,
                &record.value,
                self.target.base_url(),
                record.retarget,
            )
            .await?;
        if record.retarget {
            tracing::warn!(
                "this database now belongs to {} (--retarget)",
                self.target.base_url()
            );
        }
        Ok(())
    }
}

//! Which Kapture a drain sends to: the configured target checked against the one the database
//! belongs to, which is recorded before the first request and moved only with `--retarget`.

use crate::config::RunSettings;
use crate::exit::UsageError;
use crate::kapture::{Target, TargetError};
use crate::store::{Run, Store, TargetBinding};

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
    /// Records the target before the first request: a first binding only when some run has
    /// rows to send, a retarget always (it was asked for).
    pub async fn record(&self, store: &Store, runs: &[Run]) -> anyhow::Result<()> {
        let Some(record) = &self.record else {
            return Ok(());
        };
        if !record.retarget {
            let mut open = 0;
            for run in runs {
                let counts = store.counts(run.id).await?;
                open += counts.pending + counts.in_flight;
            }
            if open == 0 {
                return Ok(());
            }
        }
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

//! `kapsync samples DIR`: write the embedded sample exports and their mapping files.

use anyhow::Context as _;

use super::demo::SAMPLES;
use crate::cli::SamplesArgs;
use crate::config::Settings;
use crate::exit::{self, UsageError};
use crate::report::text;

/// Runs `kapsync samples`.
pub fn run(settings: &Settings, args: &SamplesArgs) -> anyhow::Result<u8> {
    let files: Vec<(&str, &str)> = SAMPLES
        .iter()
        .flat_map(|(name, content, mapping)| std::iter::once((*name, *content)).chain(*mapping))
        .collect();
    let existing: Vec<&str> = files
        .iter()
        .filter(|(name, _)| std::fs::symlink_metadata(args.dir.join(name)).is_ok())
        .map(|(name, _)| *name)
        .collect();
    if !existing.is_empty() {
        return Err(UsageError(format!(
            "{} already holds {}: choose another directory, or remove them first",
            args.dir.display(),
            existing.join(", ")
        ))
        .into());
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("failed to create {}", args.dir.display()))?;
    let mut out = String::new();
    for (name, content) in &files {
        let path = args.dir.join(name);
        std::fs::write(&path, content)
            .with_context(|| format!("failed to write {}", path.display()))?;
        out.push_str(&format!("Wrote {}\n", path.display()));
    }
    let dir = text::shell_word(&args.dir.display().to_string());
    out.push_str(&format!(
        "Try: {} ingest --mapping {dir}/zendesk_mapping.toml {dir}/zendesk_export.csv\n",
        settings.hint_prefix()
    ));
    text::print(&out)?;
    Ok(exit::OK)
}

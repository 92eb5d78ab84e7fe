//! `kapsync mapping init`: propose a mapping file from a sample of a CSV or JSONL export.

use std::fs::File;

use anyhow::Context as _;

use crate::cli::{MappingCommand, MappingInitArgs};
use crate::config::Settings;
use crate::exit::{self, UsageError};
use crate::ingest::{decode, delimiter, guess};
use crate::report::text;

/// Runs `kapsync mapping ...`.
pub fn run(settings: &Settings, command: MappingCommand) -> anyhow::Result<u8> {
    match command {
        MappingCommand::Init(args) => init(settings, &args),
    }
}

fn init(settings: &Settings, args: &MappingInitArgs) -> anyhow::Result<u8> {
    let shown = args.file.display().to_string();
    let jsonl = crate::ingest::detect_format(&args.file, None).ok()
        == Some(crate::ingest::InputFormat::Jsonl);
    File::open(&args.file).map_err(|e| UsageError(format!("failed to read {shown}: {e}")))?;
    if let Some(output) = &args.output
        && std::fs::symlink_metadata(output).is_ok()
    {
        return Err(UsageError(format!(
            "{} exists: choose another -o, or remove it first",
            output.display()
        ))
        .into());
    }
    let file_name = args
        .file
        .file_name()
        .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());
    let proposal = if jsonl {
        guess::propose_jsonl(File::open(&args.file)?, &file_name)
    } else {
        guess::propose(|| File::open(&args.file), &file_name)
    }
    .with_context(|| format!("failed to sample {shown}"))?;
    let Some(output) = &args.output else {
        text::print(&proposal.toml)?;
        return Ok(exit::OK);
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(output)
        .and_then(|mut f| std::io::Write::write_all(&mut f, proposal.toml.as_bytes()))
        .with_context(|| format!("failed to write {}", output.display()))?;
    let read_as = match proposal.source {
        Some((encoding, delimiter)) => format!(
            " (delimiter {}, encoding {})",
            delimiter::shown(delimiter),
            decode::name(encoding)
        ),
        None => String::new(),
    };
    text::print(&format!(
        "Wrote {} from {} rows of {shown}{read_as}.\n\
         Fill in [values.sub_status], then: {} ingest --mapping {} {}\n",
        output.display(),
        proposal.rows,
        settings.hint_prefix(),
        text::shell_word(&output.display().to_string()),
        text::shell_word(&shown),
    ))?;
    Ok(exit::OK)
}

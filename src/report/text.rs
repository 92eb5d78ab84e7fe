//! Human-readable summaries and tables, as plain strings so tests can snapshot them, and the
//! one place that writes to standard output.

use std::fmt::Write as _;
use std::io::Write as _;

use super::terminal::{self, shown};
use crate::engine::Halt;
use crate::ingest::{FieldValues, FileSummary};
use crate::store::{Counts, JobState, Run, RunSummary, SourceSummary};

/// Writes text for a person to standard output, any control character in it escaped (the
/// parts that come from servers and files are escaped and cut where they are put in, too).
/// A closed pipe (`kapsync status | head`) is not an error.
pub fn print(text: &str) -> std::io::Result<()> {
    write_stdout(&terminal::lines(text))
}

fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes one JSON document (pretty) and a newline to standard output.
pub fn print_json(value: &impl serde::Serialize) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    text.push('\n');
    write_stdout(&text)
}

/// What the commands a summary suggests start with, so they work when pasted as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hints {
    /// `kapsync` and the global flags that are not the defaults (`--db PATH`).
    pub prefix: String,
    /// Flags a `run` needs besides the run (`--token-file PATH`), each with a leading space.
    pub run_flags: String,
}

impl Default for Hints {
    fn default() -> Self {
        Self {
            prefix: "kapsync".to_owned(),
            run_flags: String::new(),
        }
    }
}

/// The summary of an ingest; hints start with `prefix`. `ingest_flags` are the flags an
/// ingest with the same mapping needs besides the files (` --mapping m.toml`), for the hint
/// that names `--encoding`.
pub fn ingest_summary(
    run: &Run,
    created: bool,
    files: &[FileSummary],
    prefix: &str,
    ingest_flags: &str,
) -> String {
    let mut out = String::new();
    let how = if created { "new run" } else { "run" };
    let _ = writeln!(out, "Ingested into {how} {}", shown(&run.name));
    let (mut read, mut valid, mut invalid, mut added) = (0, 0, 0, 0);
    let (mut changed, mut unchanged, mut superseded) = (0, 0, 0);
    for file in files {
        read += file.rows_read;
        valid += file.valid;
        invalid += file.invalid;
        added += file.added;
        changed += file.changed;
        unchanged += file.unchanged;
        superseded += file.superseded;
        let note = match file.outcome {
            "already_ingested" => " (already ingested into this run: nothing added)",
            "resumed" => " (an interrupted ingest was finished)",
            _ => "",
        };
        let split = if file.unchanged > 0 {
            format!(
                " ({} new or changed, {} unchanged: skipped)",
                file.changed, file.unchanged
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {}: {} rows read, {} valid{split}, {} invalid{note}",
            shown(&file.path),
            file.rows_read,
            file.valid,
            file.invalid
        );
        if file.superseded > 0 {
            let _ = writeln!(
                out,
                "    superseded: {} older pending rows skipped for newer ones",
                file.superseded
            );
        }
        let delimiter = file.delimiter.filter(|d| *d != ",");
        if delimiter.is_some() || file.encoding != "utf-8" {
            let mut how = Vec::new();
            if let Some(delimiter) = delimiter {
                let found = if file.delimiter_detected {
                    " (found on the header line)"
                } else {
                    ""
                };
                how.push(format!("delimiter {delimiter}{found}"));
            }
            how.push(format!("encoding {}", file.encoding));
            let _ = writeln!(out, "    read with {}", how.join(", "));
        }
        if !file.ignored_columns.is_empty() {
            // Header names come from the file: each escaped and cut.
            let names: Vec<String> = file.ignored_columns.iter().map(|c| shown(c)).collect();
            let _ = writeln!(out, "    ignored columns: {}", names.join(", "));
        }
        if let Some(encoding) = file.suggested_encoding {
            let _ = writeln!(
                out,
                "    not UTF-8: {}, {} as {encoding} text; if the file is {encoding}, \
                 ingest it into a new run with the flag: {prefix} ingest{ingest_flags} --encoding {encoding} {}",
                plural(file.not_utf8_rows, "row"),
                if file.not_utf8_rows == 1 {
                    "which reads"
                } else {
                    "all of which read"
                },
                shell_word(&file.path)
            );
        }
        value_lines(&mut out, &file.values);
        for sample in &file.invalid_samples {
            let _ = writeln!(out, "    line {}: {}", sample.line, shown(&sample.reason));
        }
        if file.invalid > file.invalid_samples.len() as i64 && !file.invalid_samples.is_empty() {
            let _ = writeln!(
                out,
                "    ... and {} more ({prefix} export --run {} --state invalid)",
                file.invalid - file.invalid_samples.len() as i64,
                shell_word(&run.name)
            );
        }
    }
    let _ = write!(
        out,
        "Total: {read} rows read, {valid} valid, {invalid} invalid, {added} added"
    );
    if unchanged > 0 || superseded > 0 {
        let _ = write!(out, "; {changed} to send, {unchanged} unchanged");
        if superseded > 0 {
            let _ = write!(out, ", {superseded} superseded");
        }
    }
    out.push('\n');
    out
}

/// The listed fields' source values, for fields the mapping checks (a `[values]` table or an
/// allowed list): what each value became, so a typo in the table shows.
fn value_lines(out: &mut String, fields: &[FieldValues]) {
    for field in fields.iter().filter(|f| f.checked) {
        let from = field
            .column
            .as_ref()
            .map(|c| format!(" (from {c:?})"))
            .unwrap_or_default();
        let _ = writeln!(out, "    {} values{from}:", field.field);
        for value in &field.values {
            let rows = plural(value.rows, "row");
            let what = match (&value.sent, value.note) {
                (Some(sent), "unmapped") => {
                    format!("not in [values.{}], sent as {sent:?}", field.field)
                }
                (Some(sent), _) => format!("sent as {sent:?}"),
                (None, _) => "not allowed: rows invalid".to_owned(),
            };
            let _ = writeln!(out, "      {:?}: {rows}, {what}", value.value);
        }
        if field.other_values > 0 || field.other_rows > 0 {
            let _ = writeln!(
                out,
                "      ... and {} more values ({})",
                field.other_values,
                plural(field.other_rows, "row")
            );
        }
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A run's counts and source files; `resolved` of the failed rows are resolved by a later row
/// of their sync key and shown apart from the open ones.
pub fn status(run: &Run, counts: &Counts, resolved: i64, sources: &[SourceSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Run {} (created {})", shown(&run.name), run.created_at);
    for state in JobState::ALL {
        let _ = write!(out, "  {:<10} {:>9}", state.as_str(), counts.get(state));
        if state == JobState::Failed && resolved > 0 {
            let _ = write!(
                out,
                "  ({} open, {resolved} resolved by a later row of their ticket)",
                counts.failed - resolved
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "  {:<10} {:>9}", "total", counts.total());
    if !sources.is_empty() {
        let _ = writeln!(out, "Sources:");
        for source in sources {
            let partial = if source.complete {
                ""
            } else {
                " (ingest interrupted)"
            };
            let _ = writeln!(
                out,
                "  {} ({}): {} rows, {} valid, {} invalid{partial}",
                shown(&source.path),
                source.format,
                source.rows_read,
                source.rows_valid,
                source.rows_invalid
            );
        }
    }
    out
}

/// The list of runs.
pub fn runs(list: &[RunSummary]) -> String {
    if list.is_empty() {
        return "No runs yet: ingest a file first (kapsync ingest FILE)\n".to_owned();
    }
    let width = list
        .iter()
        .map(|r| r.run.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "RUN", "PENDING", "IN_FLIGHT", "SUCCEEDED", "FAILED", "INVALID", "SKIPPED"
    );
    for item in list {
        let c = &item.counts;
        let _ = writeln!(
            out,
            "{:<width$}  {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            item.run.name, c.pending, c.in_flight, c.succeeded, c.failed, c.invalid, c.skipped
        );
    }
    out
}

pub use crate::quote::shell_word;

/// A halt as shown: the server's message in it escaped and cut, the advice whole.
fn shown_halt(halt: &Halt) -> String {
    let mut halt = halt.clone();
    match &mut halt {
        Halt::Auth { message }
        | Halt::Forbidden { message }
        | Halt::Config { message, .. }
        | Halt::WrongTarget { message, .. }
        | Halt::Canary { message, .. }
        | Halt::Unreachable { message, .. } => {
            *message = shown(message);
        }
    }
    halt.to_string()
}

/// The summary of a drain, one block per run. `resolved[i]` of report `i`'s failed rows are
/// resolved by a later row of their sync key.
pub fn drain_summary(
    reports: &[crate::engine::DrainReport],
    resolved: &[i64],
    hints: &Hints,
) -> String {
    let prefix = &hints.prefix;
    let mut out = String::new();
    if reports.is_empty() {
        out.push_str("Nothing to send: no run has pending rows.\n");
        return out;
    }
    for (i, r) in reports.iter().enumerate() {
        let resolved = resolved.get(i).copied().unwrap_or(0);
        let secs = r.duration_ms as f64 / 1000.0;
        let c = &r.counts;
        let _ = writeln!(
            out,
            "Run {}: {} succeeded, {} failed just now ({} {} in {}, {:.1}/s)",
            shown(&r.run),
            r.succeeded,
            r.failed,
            r.requests,
            if r.requests == 1 {
                "request"
            } else {
                "requests"
            },
            humantime::format_duration(std::time::Duration::from_secs(secs.round() as u64)),
            r.mean_rate()
        );
        let resolved_note = if resolved > 0 {
            format!(" ({resolved} resolved by a later row)")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  rows now: {} succeeded, {} failed{resolved_note}, {} invalid, {} pending, {} in flight",
            c.succeeded, c.failed, c.invalid, c.pending, c.in_flight
        );
        if r.replayed > 0 {
            let _ = writeln!(
                out,
                "  replayed: {} rows were in flight when an earlier runner died and were sent again",
                r.replayed
            );
        }
        if r.throttled > 0 {
            // The same count as "N x throttled" below: answers, not slow-downs.
            let slowed = match r.throttle_events {
                0 => "too few to slow the run down".to_owned(),
                1 => "the run slowed down once".to_owned(),
                n => format!("the run slowed down {n} times"),
            };
            let _ = writeln!(
                out,
                "  throttled: {} answers were 429 (too many requests); {slowed}",
                r.throttled
            );
        }
        if !r.top_errors.is_empty() {
            let _ = writeln!(out, "  most frequent errors:");
            for e in &r.top_errors {
                let _ = writeln!(
                    out,
                    "    {:>6} x {}: {}",
                    e.count,
                    e.class,
                    shown(&e.message)
                );
            }
        }
        let name = shell_word(&r.run);
        match &r.halt {
            Some(halt) => {
                let step = halt
                    .next_step(prefix, &r.run)
                    .map(|step| format!(" ({step})"))
                    .unwrap_or_default();
                let _ = writeln!(out, "  HALTED: {}{step}", shown_halt(halt));
            }
            None if r.stopped && c.pending + c.in_flight > 0 => {
                let _ = writeln!(
                    out,
                    "  stopped early with {} rows left: run `{prefix} run --run {name}{}` to resume",
                    c.pending + c.in_flight,
                    hints.run_flags
                );
            }
            None => {}
        }
        if c.failed > resolved {
            let _ = writeln!(
                out,
                "  next: {prefix} export --run {name} --state failed -o failed.csv   \
                 (fix, then {prefix} retry --run {name})"
            );
        }
    }
    out
}

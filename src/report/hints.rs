//! The commands the report prints: export a run's failed or invalid rows, or one group of them.
//!
//! Each is pasteable as printed: it starts with the hint prefix (`kapsync` and the `--db`,
//! `--config` and `--profile` that are not the defaults) and names the run.

use serde::Serialize;

use crate::quote::shell_word;
use crate::store::{GrepMatch, JobState, MessageGroup, Run};

/// A message group of the report, with the commands that export it.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    #[serde(flatten)]
    pub group: MessageGroup,
    /// One command per run holding rows of the group (none when the message is empty:
    /// `--grep` needs some text).
    pub exports: Vec<GroupExport>,
}

/// `kapsync export --run RUN --state STATE --grep MESSAGE`: one run's rows of a group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupExport {
    pub run: String,
    /// Rows of the group in this run.
    pub rows: i64,
    /// Rows the command exports: more than `rows` when other messages of the run contain
    /// this one (`--grep` takes a substring).
    pub exported: i64,
    pub command: String,
}

/// `kapsync export` for the rows in `state` of each run in `runs` (name, rows in `state`)
/// that has some.
pub fn export_commands(prefix: &str, runs: &[(&str, i64)], state: JobState) -> Vec<String> {
    runs.iter()
        .filter(|(_, rows)| *rows > 0)
        .map(|(run, _)| {
            format!(
                "{prefix} export --run {} --state {} -o {}",
                shell_word(run),
                state.as_str(),
                shell_word(&file_name(&format!("{run}-{}.csv", state.as_str())))
            )
        })
        .collect()
}

/// The groups with their export commands, from what [`crate::store::Store::grep_matches`]
/// found for them.
pub fn groups(
    prefix: &str,
    runs: &[Run],
    state: JobState,
    groups: Vec<MessageGroup>,
    matches: &[GrepMatch],
) -> Vec<Group> {
    groups
        .into_iter()
        .enumerate()
        .map(|(k, group)| {
            let exports = matches
                .iter()
                .filter(|m| m.group == k as i64)
                .filter_map(|m| {
                    let run = runs.iter().find(|r| r.id == m.run_id)?;
                    let file = format!("{}-{}-{}.csv", run.name, state.as_str(), k + 1);
                    Some(GroupExport {
                        run: run.name.clone(),
                        rows: m.in_group,
                        exported: m.matched,
                        command: format!(
                            "{prefix} export --run {} --state {} --grep {} -o {}",
                            shell_word(&run.name),
                            state.as_str(),
                            shell_word(&group.message),
                            shell_word(&file_name(&file))
                        ),
                    })
                })
                .collect();
            Group { group, exports }
        })
        .collect()
}

/// A file name from a run name: characters a shell or a file system dislikes become `-`.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_command_carries_the_prefix_the_run_and_the_quoted_message() {
        let run = Run {
            id: 7,
            name: "night 2".into(),
            created_at: String::new(),
        };
        let group = MessageGroup {
            class: String::new(),
            message: "sub_status: 'ZZ' is not a status".into(),
            count: 3,
            examples: Vec::new(),
        };
        let found = [GrepMatch {
            group: 0,
            run_id: 7,
            in_group: 3,
            matched: 4,
        }];
        let out = groups(
            "kapsync --db 'my db.db'",
            &[run],
            JobState::Invalid,
            vec![group],
            &found,
        );
        let export = &out[0].exports[0];
        assert_eq!(
            export.command,
            "kapsync --db 'my db.db' export --run 'night 2' --state invalid \
             --grep 'sub_status: '\\''ZZ'\\'' is not a status' -o night-2-invalid-1.csv"
        );
        assert_eq!((export.rows, export.exported), (3, 4));
        let plain = export_commands("kapsync", &[("n", 2), ("m", 0)], JobState::Failed);
        assert_eq!(
            plain,
            ["kapsync export --run n --state failed -o n-failed.csv"]
        );
    }
}

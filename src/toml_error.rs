//! A TOML parse error located by line and column, never quoting the source: it may hold a token.
//!
//! `toml`'s own message prints the offending line with a caret under it. A `token = "..."` line
//! put in kapsync.toml by mistake, or the token file passed as `--config` or `--mapping`, would
//! then reach stderr and the cron log, so only the message and the position are kept, and
//! quoted string values inside the message are left out.

use std::fmt;

/// What went wrong in a TOML document, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TomlError {
    message: String,
    /// 1-based line and column (in characters) of the offending text, when known.
    position: Option<(usize, usize)>,
}

impl TomlError {
    /// Keeps what is safe to show of `error`, located within `text`.
    pub fn new(error: &toml::de::Error, text: &str) -> Self {
        let position = error.span().map(|span| line_column(text, span.start));
        Self {
            message: without_strings(error.message().trim()),
            position,
        }
    }

    /// The message, without the source line and with quoted values left out.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The 1-based line and column, when the parser named a place.
    pub fn position(&self) -> Option<(usize, usize)> {
        self.position
    }
}

impl fmt::Display for TomlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "line {line}, column {column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TomlError {}

/// The 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// The message with every double-quoted part replaced by `"..."`: serde quotes the values it
/// could not use (`invalid type: string "abc", expected u32`), and such a value may be a token.
/// Parts in backticks are the parser's own words (`expected `"``) and stay.
fn without_strings(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '`' => {
                for c in chars.by_ref() {
                    out.push(c);
                    if c == '`' {
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                }
                out.push_str("...\"");
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only parsed, to provoke errors")]
    struct Settings {
        rate: Option<u32>,
    }

    fn parse(text: &str) -> TomlError {
        let error = toml::from_str::<Settings>(text).unwrap_err();
        TomlError::new(&error, text)
    }

    #[test]
    fn an_unknown_key_is_named_with_its_place_but_not_its_value() {
        let error = parse("rate = 5\ntoken = \"SECRET-CANARY\"\n");
        let text = error.to_string();
        assert!(
            text.starts_with("line 2, column 1: unknown field `token`"),
            "{text}"
        );
        assert!(!text.contains("SECRET-CANARY"), "{text}");
        assert_eq!(error.position(), Some((2, 1)));
    }

    #[test]
    fn a_wrong_value_is_described_without_quoting_it() {
        let text = parse("rate = \"SECRET-CANARY\"").to_string();
        assert!(text.starts_with("line 1, column 8: invalid type"), "{text}");
        assert!(!text.contains("SECRET-CANARY"), "{text}");
    }

    #[test]
    fn a_file_that_is_not_toml_shows_no_source_line() {
        // The shape of a token file passed as --config by mistake.
        let text = parse("Basic SECRET-CANARY==\n").to_string();
        assert!(text.starts_with("line 1, column "), "{text}");
        assert!(!text.contains("SECRET-CANARY"), "{text}");
    }

    #[test]
    fn columns_count_characters_and_quotes_are_dropped_whole() {
        assert_eq!(line_column("é = 1\nab", 8), (2, 2));
        assert_eq!(
            without_strings(r#"invalid value: string "a\"b", expected "x""#),
            r#"invalid value: string "...", expected "...""#
        );
        assert_eq!(
            without_strings("invalid basic string, expected `\"`"),
            "invalid basic string, expected `\"`"
        );
    }
}

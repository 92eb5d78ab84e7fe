//! The API token: loaded once from a file or the environment, sent as given, never shown.

use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::header::HeaderValue;

/// Environment variable holding the API token.
pub const TOKEN_ENV: &str = "KAPTURE_TOKEN";

/// The Kapture API token, already encoded by Kapture: it is sent as `Authorization: Basic
/// <token>` and never base64-encoded again.
///
/// Debug and Display print `[redacted]`, so the token cannot leak through logs or errors.
#[derive(Clone)]
pub struct Token {
    header: HeaderValue,
}

/// A token that cannot be loaded. Messages never contain the token itself.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Neither `--token-file` nor the environment gave a token.
    #[error("failed to find an API token: set {TOKEN_ENV} or pass --token-file PATH")]
    Missing,
    /// The token file could not be read.
    #[error("failed to read the token file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The token is empty once trimmed and stripped of `Basic `.
    #[error("failed to use the API token from {origin}: it is empty")]
    Empty { origin: String },
    /// The token holds characters that cannot go in an HTTP header.
    #[error(
        "failed to use the API token from {origin}: it contains spaces, control or non-ASCII \
         characters; give the token exactly as Kapture issued it"
    )]
    Invalid { origin: String },
}

impl TokenError {
    /// Whether the user can fix this (exit code 2): every token error is theirs to fix.
    pub fn is_usage(&self) -> bool {
        true
    }
}

impl Token {
    /// Reads the token from `token_file` (its first line, trimmed) when given, else from the
    /// `KAPTURE_TOKEN` environment variable. A leading `Basic ` is accepted and dropped.
    pub fn load(token_file: Option<&Path>) -> Result<Token, TokenError> {
        match token_file {
            Some(path) => {
                warn_if_shared(path);
                let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let first = text.lines().next().unwrap_or("");
                Self::parse(first, &format!("token file {}", path.display()))
            }
            None => match std::env::var(TOKEN_ENV) {
                Ok(value) if !value.trim().is_empty() => Self::parse(&value, TOKEN_ENV),
                _ => Err(TokenError::Missing),
            },
        }
    }

    /// Builds a token from its text, with or without a leading `Basic `.
    pub fn new(raw: &str) -> Result<Token, TokenError> {
        Self::parse(raw, "the given value")
    }

    fn parse(raw: &str, origin: &str) -> Result<Token, TokenError> {
        let bare = strip_basic(raw);
        if bare.is_empty() {
            return Err(TokenError::Empty {
                origin: origin.to_owned(),
            });
        }
        if !bare.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Invalid {
                origin: origin.to_owned(),
            });
        }
        let mut header =
            HeaderValue::from_str(&format!("Basic {bare}")).map_err(|_| TokenError::Invalid {
                origin: origin.to_owned(),
            })?;
        header.set_sensitive(true);
        Ok(Token { header })
    }

    /// The `Authorization` header value, marked sensitive so HTTP libraries do not print it.
    pub(crate) fn header_value(&self) -> HeaderValue {
        self.header.clone()
    }

    /// The token's text as sent after `Basic `, for replacing it in what servers send back.
    pub(crate) fn secret(&self) -> &str {
        let text = self.header.to_str().unwrap_or("");
        text.strip_prefix("Basic ").unwrap_or(text)
    }
}

/// Warns, as ssh does for a private key, when other users may read the token file. Only a
/// warning: the file may sit on a file system that shows no real permissions.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "the token file {} can be read by other users (mode {mode:03o}); \
                     run `chmod 600 {}`",
                    path.display(),
                    crate::quote::shell_word(&path.display().to_string())
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The token text without surrounding space and without a leading `Basic` scheme word.
pub(crate) fn strip_basic(text: &str) -> &str {
    let text = text.trim();
    match text.get(..5) {
        Some(word)
            if word.eq_ignore_ascii_case("basic")
                && text[5..].chars().next().is_none_or(char::is_whitespace) =>
        {
            text[5..].trim_start()
        }
        _ => text,
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(token: &Token) -> String {
        token.header_value().to_str().unwrap().to_owned()
    }

    #[test]
    fn accepts_the_token_with_or_without_basic() {
        for raw in [
            "abc123==",
            "Basic abc123==",
            "  basic   abc123==\n",
            "BASIC abc123==",
        ] {
            let token = Token::new(raw).unwrap();
            assert_eq!(header(&token), "Basic abc123==", "from {raw:?}");
        }
    }

    #[test]
    fn never_encodes_the_token_again() {
        let token = Token::new("dXNlcjpwYXNz").unwrap();
        assert_eq!(header(&token), "Basic dXNlcjpwYXNz");
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let token = Token::new("SECRET-VALUE").unwrap();
        assert_eq!(format!("{token:?}"), "[redacted]");
        assert_eq!(format!("{token}"), "[redacted]");
        assert!(!format!("{:?}", token.header_value()).contains("SECRET"));
    }

    #[test]
    fn refuses_empty_and_unprintable_tokens_without_echoing_them() {
        assert!(matches!(Token::new("  "), Err(TokenError::Empty { .. })));
        assert!(matches!(
            Token::new("Basic "),
            Err(TokenError::Empty { .. })
        ));
        let err = Token::new("SECRET with space").unwrap_err();
        assert!(matches!(err, TokenError::Invalid { .. }));
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn loads_the_first_line_of_a_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  Basic file-token  \nsecond line\n").unwrap();
        let token = Token::load(Some(&path)).unwrap();
        assert_eq!(header(&token), "Basic file-token");
    }

    #[test]
    fn a_missing_token_file_names_the_path() {
        let err = Token::load(Some(Path::new("/nonexistent/kapsync-token"))).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/kapsync-token"),
            "{err}"
        );
    }
}

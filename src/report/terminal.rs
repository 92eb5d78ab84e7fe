//! Text from servers and files made safe to show a person: control characters escaped,
//! long messages cut.
//!
//! A server message, a CSV header or a cell can hold escape sequences that clear the screen,
//! retitle the terminal or fake output lines. Whatever reaches a terminal from outside goes
//! through [`shown`] (one message: every control character escaped, cut at
//! [`MAX_SHOWN_CHARS`]) or [`lines`] (a whole text: line breaks kept), or through
//! [`TerminalWriter`] for a stream.

use std::borrow::Cow;
use std::io::{self, Write};

/// Most characters of one message shown in a summary, a halt or an error line.
pub const MAX_SHOWN_CHARS: usize = 300;

/// Whether a character must not reach a terminal as it is: C0 and C1 controls, DEL, and the
/// bidirectional overrides that make text display in another order than it reads.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
    }
}

/// One message with every unsafe character (line breaks too) escaped, e.g. ESC as `\u{1b}`.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One message as shown to a person: escaped, and cut after [`MAX_SHOWN_CHARS`] characters
/// with a note saying how much was left out.
pub fn shown(text: &str) -> String {
    shown_within(text, MAX_SHOWN_CHARS)
}

/// As [`shown`], with another limit.
pub fn shown_within(text: &str, max_chars: usize) -> String {
    let total = text.chars().count();
    if total <= max_chars {
        return escape(text).into_owned();
    }
    let kept: String = text.chars().take(max_chars).collect();
    format!(
        "{}... [{} more characters cut]",
        escape(&kept),
        total - max_chars
    )
}

/// As [`shown_within`], keeping line breaks (for our own multi-line error texts).
pub fn shown_lines_within(text: &str, max_chars: usize) -> String {
    let total = text.chars().count();
    if total <= max_chars {
        return lines(text).into_owned();
    }
    let kept: String = text.chars().take(max_chars).collect();
    format!(
        "{}... [{} more characters cut]",
        lines(&kept),
        total - max_chars
    )
}

/// A whole text for a terminal: line breaks and tabs kept, every other unsafe character
/// escaped.
pub fn lines(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c != '\n' && c != '\t' && is_unsafe(c);
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A writer for a terminal: passes text through [`lines`], so a stream of export records
/// cannot drive the terminal. Bytes that are not UTF-8 are shown as `\xNN`.
#[derive(Debug)]
pub struct TerminalWriter<W: Write> {
    inner: W,
    /// The start of a character split between two writes.
    partial: Vec<u8>,
}

impl<W: Write> TerminalWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            partial: Vec::new(),
        }
    }
}

impl<W: Write> Write for TerminalWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = std::mem::take(&mut self.partial);
        bytes.extend_from_slice(buf);
        let mut out = String::with_capacity(bytes.len());
        let mut rest = &bytes[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(&lines(text));
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(&lines(std::str::from_utf8(good).unwrap_or_default()));
                    match e.error_len() {
                        None => {
                            self.partial = bad.to_vec();
                            break;
                        }
                        Some(n) => {
                            for b in &bad[..n] {
                                out.push_str(&format!("\\x{b:02x}"));
                            }
                            rest = &bad[n..];
                        }
                    }
                }
            }
        }
        self.inner.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.partial.is_empty() {
            let partial = std::mem::take(&mut self.partial);
            for b in partial {
                write!(self.inner, "\\x{b:02x}")?;
            }
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_overrides_are_shown_not_obeyed() {
        assert_eq!(escape("plain text"), "plain text");
        assert_eq!(
            escape("\u{1b}]0;pwned\u{7}\u{1b}[2Jx\r\n\u{9b}\u{202e}"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2Jx\\r\\n\\u{9b}\\u{202e}"
        );
        assert_eq!(lines("a\tb\nc\u{1b}[31m"), "a\tb\nc\\u{1b}[31m");
    }

    #[test]
    fn long_messages_are_cut_with_a_note() {
        let cut = shown(&"é".repeat(1000));
        assert!(cut.starts_with(&"é".repeat(MAX_SHOWN_CHARS)), "{cut}");
        assert!(cut.ends_with("... [700 more characters cut]"), "{cut}");
        assert_eq!(shown("short"), "short");
    }

    #[test]
    fn the_writer_escapes_across_split_characters_and_bad_bytes() {
        let mut writer = TerminalWriter::new(Vec::new());
        let text = "a\u{9b}b\u{1b}c\n".as_bytes();
        // Split inside the two-byte U+009B.
        writer.write_all(&text[..2]).unwrap();
        writer.write_all(&text[2..]).unwrap();
        writer.write_all(&[0xff, b'\n']).unwrap();
        writer.flush().unwrap();
        assert_eq!(
            String::from_utf8(writer.inner).unwrap(),
            "a\\u{9b}b\\u{1b}c\n\\xff\n"
        );
    }
}

//! Input text encodings: choosing one, decoding it to UTF-8 as the bytes stream in.
//!
//! UTF-8 input is read as it is, so a byte that is not UTF-8 makes its row invalid (and such
//! rows in a file that reads as Windows-1252 earn a hint naming `--encoding`). Any other
//! encoding of the WHATWG set (windows-1252, iso-8859-1, utf-16le, ...) is decoded by
//! encoding_rs through fixed buffers, so memory stays flat however large the file. A UTF-16
//! byte order mark picks UTF-16 without a flag.

use std::io::{self, Read};

use encoding_rs::{CoderResult, Decoder, Encoding, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};

/// Bytes decoded per step.
const CHUNK: usize = 64 * 1024;

/// The encoding named by `label` (a WHATWG label: `utf-8`, `windows-1252`, `latin1`,
/// `utf-16le`, ...), or why it is not one.
pub fn encoding_for_label(label: &str) -> Result<&'static Encoding, String> {
    let encoding = Encoding::for_label(label.trim().as_bytes()).ok_or_else(|| {
        format!(
            "unknown encoding {label:?}: use a WHATWG label such as utf-8, windows-1252, \
             iso-8859-1, utf-16le or utf-16be"
        )
    })?;
    if encoding == encoding_rs::REPLACEMENT || encoding == encoding_rs::X_USER_DEFINED {
        return Err(format!(
            "encoding {label:?} cannot be used to read text files"
        ));
    }
    Ok(encoding)
}

/// The encoding a file's first bytes announce with a UTF-16 byte order mark.
pub fn bom_encoding(start: &[u8]) -> Option<&'static Encoding> {
    if start.starts_with(b"\xFF\xFE\0\0") || start.starts_with(b"\0\0\xFE\xFF") {
        None // UTF-32: not in the WHATWG set; refused by the caller.
    } else if start.starts_with(b"\xFF\xFE") {
        Some(UTF_16LE)
    } else if start.starts_with(b"\xFE\xFF") {
        Some(UTF_16BE)
    } else {
        None
    }
}

/// The encoding to read a file in: the flag's, else the one its byte order mark names, else
/// UTF-8. A byte order mark wins over the flag (as in every WHATWG decoder): it cannot be
/// mistaken.
pub fn choose(flag: Option<&'static Encoding>, start: &[u8]) -> &'static Encoding {
    bom_encoding(start).or(flag).unwrap_or(UTF_8)
}

/// The name shown for an encoding: its WHATWG name, lower-cased (`windows-1252`).
pub fn name(encoding: &'static Encoding) -> String {
    encoding.name().to_ascii_lowercase()
}

/// Reads `inner` in `encoding`, handing out UTF-8. Malformed sequences become U+FFFD.
pub struct Decoded<R> {
    inner: R,
    decoder: Decoder,
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    output: Vec<u8>,
    out_start: usize,
    out_end: usize,
    eof: bool,
    done: bool,
}

impl<R> std::fmt::Debug for Decoded<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("encoding", &self.decoder.encoding().name())
            .finish_non_exhaustive()
    }
}

impl<R: Read> Decoded<R> {
    /// Wraps `inner`; a byte order mark of `encoding` is dropped.
    pub fn new(inner: R, encoding: &'static Encoding) -> Self {
        Self {
            inner,
            decoder: encoding.new_decoder_with_bom_removal(),
            input: vec![0; CHUNK],
            in_start: 0,
            in_end: 0,
            output: vec![0; CHUNK * 3 + 16],
            out_start: 0,
            out_end: 0,
            eof: false,
            done: false,
        }
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out_start < self.out_end {
                let n = buf.len().min(self.out_end - self.out_start);
                buf[..n].copy_from_slice(&self.output[self.out_start..self.out_start + n]);
                self.out_start += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            if self.in_start == self.in_end && !self.eof {
                let n = self.inner.read(&mut self.input)?;
                self.in_start = 0;
                self.in_end = n;
                self.eof = n == 0;
            }
            let (result, read, written, _) = self.decoder.decode_to_utf8(
                &self.input[self.in_start..self.in_end],
                &mut self.output,
                self.eof,
            );
            self.in_start += read;
            self.out_start = 0;
            self.out_end = written;
            if self.eof && result == CoderResult::InputEmpty {
                self.done = true;
            }
        }
    }
}

/// Whether bytes that are not UTF-8 read as Windows-1252 text: every byte above ASCII is a
/// letter or common punctuation there (é, ß, €, ’, –), and none is a control character or
/// an unassigned byte.
pub fn looks_like_windows_1252(bytes: &[u8]) -> bool {
    let (text, _, malformed) = WINDOWS_1252.decode(bytes);
    !malformed
        && text.chars().all(|c| {
            if c.is_ascii() {
                !c.is_ascii_control() || matches!(c, '\t' | '\r' | '\n')
            } else {
                c.is_alphanumeric()
                    || "€‚„…†‡ˆ‰‹‘’“”•–—˜™›¡¢£¥§¨©ª«¬®°±²³´µ¶·¸¹º»¼½¾¿×÷\u{a0}".contains(c)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], encoding: &'static Encoding, read_size: usize) -> String {
        let mut reader = Decoded::new(bytes, encoding);
        let mut out = Vec::new();
        let mut buf = vec![0; read_size];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn windows_1252_and_utf16_decode_in_any_read_size() {
        let cp1252 = b"Id;Status\n1;R\xe9solu \x80\n";
        for size in [1, 3, 64 * 1024] {
            assert_eq!(
                decode_all(cp1252, WINDOWS_1252, size),
                "Id;Status\n1;Résolu €\n"
            );
        }
        let mut utf16 = vec![0xFF, 0xFE];
        for unit in "Id,é\n1,☃\n".encode_utf16() {
            utf16.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(choose(None, &utf16), UTF_16LE);
        assert_eq!(choose(Some(WINDOWS_1252), &utf16), UTF_16LE, "a BOM wins");
        for size in [1, 2, 7, 1024] {
            assert_eq!(decode_all(&utf16, UTF_16LE, size), "Id,é\n1,☃\n");
        }
        // An odd trailing byte is malformed, not lost silently.
        utf16.push(b'x');
        assert!(decode_all(&utf16, UTF_16LE, 5).ends_with('\u{FFFD}'));
    }

    #[test]
    fn labels_are_whatwg_labels() {
        assert_eq!(encoding_for_label("latin1").unwrap(), WINDOWS_1252);
        assert_eq!(encoding_for_label("UTF-16LE").unwrap(), UTF_16LE);
        assert_eq!(name(encoding_for_label("cp1252").unwrap()), "windows-1252");
        assert!(
            encoding_for_label("klingon")
                .unwrap_err()
                .contains("windows-1252")
        );
        assert!(encoding_for_label("replacement").is_err());
    }

    #[test]
    fn windows_1252_is_recognized_by_its_letters() {
        assert!(looks_like_windows_1252(b"R\xe9solu"));
        assert!(looks_like_windows_1252(b"Stra\xdfe \x80 5"));
        assert!(!looks_like_windows_1252(b"\x81\x8d"), "unassigned bytes");
        assert!(!looks_like_windows_1252(b"\x00\x9f"));
    }
}

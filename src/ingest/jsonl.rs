//! A streaming JSONL line reader that keeps at most the record limit of any one line.

use std::io::{self, BufRead, Chain, Cursor, Read};

use super::csv::take_bom;

/// Reads lines one at a time; a line over the limit is measured and skipped, not held.
#[derive(Debug)]
pub struct LineReader<R> {
    /// The input behind the few bytes taken while looking for a byte order mark.
    input: Chain<Cursor<Vec<u8>>, R>,
    max_bytes: usize,
    line: u64,
    at_start: bool,
    buf: Vec<u8>,
    bytes: u64,
}

impl<R: BufRead> LineReader<R> {
    /// Wraps `input`; lines over `max_bytes` report [`LineReader::oversize`].
    pub fn new(input: R, max_bytes: usize) -> Self {
        Self {
            input: Cursor::new(Vec::new()).chain(input),
            max_bytes,
            line: 0,
            at_start: true,
            buf: Vec::with_capacity(256),
            bytes: 0,
        }
    }

    /// Reads the next line, without its line end. Returns `Ok(false)` at the end of input.
    pub fn read_line(&mut self) -> io::Result<bool> {
        if self.at_start {
            self.at_start = false;
            let (taken, input) = self.input.get_mut();
            *taken.get_mut() = take_bom(input)?;
        }
        self.buf.clear();
        self.bytes = 0;
        let mut any = false;
        loop {
            let chunk = self.input.fill_buf()?;
            if chunk.is_empty() {
                if !any {
                    return Ok(false);
                }
                break;
            }
            any = true;
            let (take, found) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            self.bytes += take as u64;
            let room = self.max_bytes.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&chunk[..take.min(room)]);
            self.input.consume(take + usize::from(found));
            if found {
                break;
            }
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
            self.bytes -= 1;
        }
        self.line += 1;
        Ok(true)
    }

    /// The current line's number (1-based).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The current line's bytes, when it is within the limit.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The size of the current line when it is over the limit.
    pub fn oversize(&self) -> Option<u64> {
        (self.bytes > self.max_bytes as u64).then_some(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_with_numbers_and_strips_crlf_and_bom() {
        let mut r = LineReader::new("\u{feff}{\"a\":1}\r\n\n{\"b\":2}".as_bytes(), 100);
        let mut got = Vec::new();
        while r.read_line().unwrap() {
            got.push((r.line(), String::from_utf8(r.bytes().to_vec()).unwrap()));
        }
        assert_eq!(
            got,
            vec![
                (1, "{\"a\":1}".to_string()),
                (2, String::new()),
                (3, "{\"b\":2}".to_string())
            ]
        );
    }

    /// Found by the `jsonl_update` fuzz target: a byte order mark split across buffer fills
    /// was kept in the first line.
    #[test]
    fn fuzz_regression_bom_split_across_buffer_fills() {
        for capacity in 1..=4 {
            let input = std::io::BufReader::with_capacity(capacity, &b"\xEF\xBB\xBF{}\n"[..]);
            let mut r = LineReader::new(input, 100);
            assert!(r.read_line().unwrap());
            assert_eq!(r.bytes(), b"{}", "capacity {capacity}");
        }
        let input = std::io::BufReader::with_capacity(1, &b"\xEF\xBBx\n"[..]);
        let mut r = LineReader::new(input, 100);
        assert!(r.read_line().unwrap());
        assert_eq!(r.bytes(), b"\xEF\xBBx", "a partial mark is data");
    }

    #[test]
    fn oversize_line_is_bounded_and_the_next_line_is_intact() {
        let input = format!("{}\n{{}}\n", "x".repeat(10_000));
        let mut r = LineReader::new(std::io::BufReader::with_capacity(64, input.as_bytes()), 100);
        assert!(r.read_line().unwrap());
        assert_eq!(r.oversize(), Some(10_000));
        assert!(r.bytes().len() <= 100);
        assert!(r.read_line().unwrap());
        assert_eq!((r.line(), r.bytes(), r.oversize()), (2, &b"{}"[..], None));
    }
}

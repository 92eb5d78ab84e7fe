//! The field delimiter of a CSV file: named by `--delimiter` or found in its header line.

/// The delimiters kapsync reads: comma, semicolon (Excel in much of Europe), tab and pipe.
pub const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// The delimiter a flag value names: `,` `;` `|`, and tab as `tab` or a tab character.
pub fn parse(value: &str) -> Result<u8, String> {
    match value {
        "," | "comma" => Ok(b','),
        ";" | "semicolon" => Ok(b';'),
        "\t" | "tab" | "\\t" => Ok(b'\t'),
        "|" | "pipe" => Ok(b'|'),
        other => Err(format!("unknown delimiter {other:?}: use , ; tab or |")),
    }
}

/// How a delimiter is shown: `,` `;` `|` or `tab`.
pub fn shown(delimiter: u8) -> &'static str {
    match delimiter {
        b';' => ";",
        b'\t' => "tab",
        b'|' => "|",
        _ => ",",
    }
}

/// The delimiter of a CSV file, from the start of its (UTF-8) text: the candidate that occurs
/// most often outside quotes on the header line; a comma when none does or on a tie with it.
pub fn detect(head: &[u8]) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for &byte in head {
        match byte {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = DELIMITERS.iter().position(|&d| d == byte) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let mut best = 0;
    for i in 1..DELIMITERS.len() {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    DELIMITERS[best]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_line_tells_the_delimiter() {
        assert_eq!(
            detect(b"Id;Status;Latest Comment;Follow-up at\n1;2,5;x;y"),
            b';'
        );
        assert_eq!(detect(b"ticket_id,sub_status\r\n1;2;3;4;5"), b',');
        assert_eq!(detect(b"a\tb\tc"), b'\t');
        assert_eq!(
            detect(b"a|b|\"c;d;e\""),
            b'|',
            "quoted delimiters do not count"
        );
        assert_eq!(detect(b"ticket_id\n1"), b',', "one column: comma");
        assert_eq!(detect(b"a,b;c"), b',', "a tie keeps the comma");
        assert_eq!(detect(b""), b',');
    }

    #[test]
    fn flag_values() {
        assert_eq!(parse(";").unwrap(), b';');
        assert_eq!(parse("tab").unwrap(), b'\t');
        assert_eq!(parse("\t").unwrap(), b'\t');
        assert!(parse(":").unwrap_err().contains("; tab or |"));
        assert_eq!(shown(b'\t'), "tab");
    }
}

//! Decoders and date parsing: arbitrary bytes decoded in an arbitrary WHATWG encoding through
//! `ingest::decode::Decoded` with odd read sizes, delimiter detection, the Windows-1252 check,
//! and arbitrary callback times through `ingest::times::TimeRule` with each kind of setting.
//!
//! Invariants: no panic; decoding gives valid UTF-8 equal to encoding_rs's one-shot decoding
//! whatever the read size; a detected delimiter is one of the four; a converted time is
//! always in Kapture's form (it passes `validate::callback_time`), and one given in that form
//! comes back unchanged.
#![no_main]

use std::io::Read;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use kapsync::ingest::{decode, delimiter, times::TimeRule, validate};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    label: u8,
    read_size: u8,
    bytes: Vec<u8>,
    rule: u8,
    time: String,
}

const LABELS: [&str; 8] = [
    "utf-8",
    "windows-1252",
    "iso-8859-1",
    "utf-16le",
    "utf-16be",
    "shift_jis",
    "gb18030",
    "iso-8859-2",
];

fn rules() -> &'static [TimeRule; 4] {
    static RULES: OnceLock<[TimeRule; 4]> = OnceLock::new();
    RULES.get_or_init(|| {
        let formats = |list: &[&str]| list.iter().map(|f| (*f).to_owned()).collect();
        [
            TimeRule::default(),
            TimeRule::new(formats(&["%d/%m/%Y %H:%M", "%m/%d/%Y %I:%M %p"]), None).unwrap(),
            TimeRule::new(formats(&["%d/%m/%Y %H:%M"]), Some("Europe/Berlin")).unwrap(),
            TimeRule::new(formats(&["%Y-%m-%d %H:%M %z", "%s"]), Some("Asia/Kolkata")).unwrap(),
        ]
    })
}

fuzz_target!(|input: Input| {
    let encoding =
        decode::encoding_for_label(LABELS[usize::from(input.label) % LABELS.len()]).unwrap();
    let mut reader = decode::Decoded::new(&input.bytes[..], encoding);
    let mut out = Vec::new();
    let mut buf = vec![0; usize::from(input.read_size).max(1)];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(out).expect("decoded text is UTF-8");
    let (whole, _) = encoding.decode_without_bom_handling(
        input.bytes.strip_prefix(bom(encoding)).unwrap_or(&input.bytes),
    );
    assert_eq!(text, whole, "streamed decoding equals one-shot decoding");
    assert!(delimiter::DELIMITERS.contains(&delimiter::detect(text.as_bytes())));
    let _ = decode::looks_like_windows_1252(&input.bytes);

    let rule = &rules()[usize::from(input.rule) % 4];
    if let Ok(sent) = rule.convert(&input.time) {
        assert!(validate::callback_time(&sent).is_ok(), "{:?} -> {sent:?}", input.time);
        if let Ok(canonical) = validate::callback_time(&input.time) {
            assert_eq!(sent, canonical, "Kapture's form is kept");
        }
    }
});

/// The byte order mark a decoder of `encoding` removes.
fn bom(encoding: &'static encoding_rs::Encoding) -> &'static [u8] {
    if encoding == encoding_rs::UTF_8 {
        b"\xEF\xBB\xBF"
    } else if encoding == encoding_rs::UTF_16LE {
        b"\xFF\xFE"
    } else if encoding == encoding_rs::UTF_16BE {
        b"\xFE\xFF"
    } else {
        b""
    }
}

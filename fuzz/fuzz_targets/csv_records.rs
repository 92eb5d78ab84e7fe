//! CSV record decoding: `CsvReader` over arbitrary bytes, with small record limits and buffers.
//!
//! Invariants: no panic; records come in increasing line order; no record keeps more than the
//! limit; an oversized record keeps nothing; and a 1-byte or odd-sized `BufReader` gives
//! exactly the records a large one gives.
#![no_main]

use std::io::BufReader;

use kapsync::ingest::csv::{CsvReader, FramingProblem};
use libfuzzer_sys::fuzz_target;

type Record = (u64, Vec<Vec<u8>>, Option<FramingProblem>);

fn records(data: &[u8], capacity: usize, max: usize) -> Vec<Record> {
    let mut reader = CsvReader::new(BufReader::with_capacity(capacity, data), max);
    let mut out: Vec<Record> = Vec::new();
    while reader.read_record().expect("reading a slice cannot fail") {
        let fields: Vec<Vec<u8>> = (0..reader.len())
            .map(|i| reader.field(i).to_vec())
            .collect();
        assert!(!reader.is_empty());
        assert_eq!(
            reader.all_bytes().len(),
            fields.iter().map(Vec::len).sum::<usize>()
        );
        assert!(reader.all_bytes().len() <= max, "kept more than the limit");
        if let Some(FramingProblem::TooLarge { bytes }) = reader.problem() {
            assert!(*bytes > max as u64);
            assert!(
                reader.all_bytes().is_empty(),
                "an oversized record keeps nothing"
            );
        }
        if let Some(last) = out.last() {
            assert!(reader.line() > last.0, "lines go backwards");
        }
        assert!(reader.line() >= 1);
        out.push((reader.line(), fields, reader.problem().cloned()));
    }
    // The end stays the end.
    assert!(!reader.read_record().unwrap());
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((&knob, data)) = input.split_first() else {
        return;
    };
    // Small limits reach the oversize paths; 0 keeps nothing at all.
    let max = match knob % 4 {
        0 => usize::from(knob >> 2),
        1 => 1,
        2 => 16,
        _ => 1 << 20,
    };
    let large = records(data, 64 * 1024, max);
    assert_eq!(records(data, 1, max), large, "1-byte buffer differs");
    let odd = 2 + usize::from(knob % 7);
    assert_eq!(records(data, odd, max), large, "{odd}-byte buffer differs");
    let newlines = data.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    assert!(large.len() <= newlines + 1);
});

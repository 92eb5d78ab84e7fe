//! The sync keys one ingest has stored, in a fixed-size Bloom filter: on a database that held
//! no keyed row before the ingest, only a key the filter may have seen needs the probe.

/// Bits of the filter: 2 MiB. At 1M keys a key not seen is taken for seen about once in
/// 800 (a probe of a key or two in most chunks); at 10M about one in two, and the memory
/// stays flat (the ingest's peak is near 56 MiB of the 64 allowed).
const BITS: usize = 1 << 24;

/// Bits set per key.
const HASHES: u64 = 5;

/// Keys already stored by this ingest; never answers "not seen" for a key it was given.
#[derive(Debug)]
pub(in crate::store) struct Seen {
    words: Vec<u64>,
}

impl Seen {
    pub fn new() -> Self {
        Self {
            words: vec![0; BITS / 64],
        }
    }

    /// The filter's bit positions for a key. A sync key is a SHA-256 digest, so its halves
    /// are already independent uniform hashes (double hashing needs no more).
    fn positions(key: &[u8; 16]) -> impl Iterator<Item = usize> {
        let (a, b) = key.split_at(8);
        let h1 = u64::from_le_bytes(a.try_into().unwrap_or_default());
        let h2 = u64::from_le_bytes(b.try_into().unwrap_or_default()) | 1;
        (0..HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) as usize) & (BITS - 1))
    }

    pub fn insert(&mut self, key: &[u8; 16]) {
        for bit in Self::positions(key) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// `false` only for a key never inserted.
    pub fn may_contain(&self, key: &[u8; 16]) -> bool {
        Self::positions(key).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::Seen;
    use crate::store::fixtures::key_of;

    #[test]
    fn a_key_inserted_is_always_found_and_others_seldom() {
        let mut seen = Seen::new();
        let keys: Vec<[u8; 16]> = (0..100_000).map(|i| key_of(&i.to_string())).collect();
        for key in &keys {
            seen.insert(key);
        }
        assert!(keys.iter().all(|k| seen.may_contain(k)));
        let false_hits = (100_000..200_000)
            .filter(|i| seen.may_contain(&key_of(&i.to_string())))
            .count();
        assert!(
            false_hits < 10,
            "{false_hits} keys never inserted taken for seen"
        );
    }
}

//! Sync keys in a fixed-size Bloom filter: those one ingest has stored (on a database that
//! held no keyed row before the ingest, only a key the filter may have seen needs the probe),
//! or those of the rows to send stored since the writer's transaction began (only the writer's
//! connection sees those rows; the others are probed on a reader's).

/// Bits of the filter of an ingest's keys: 2 MiB. At 1M keys a key not seen is taken for seen
/// about once in 800 (a probe of a key or two in most chunks); at 10M about one in two, and
/// the memory stays flat (the ingest's peak is near 56 MiB of the 64 allowed).
pub(super) const INGEST_BITS: usize = 1 << 24;

/// Bits of the filter of one transaction's keys to send: 128 KiB. A transaction of 100,000
/// rows to send (an ingest commits every 100,000 rows) takes a key it does not hold for one of
/// them about once in a hundred, and that key is probed on the writer's connection instead.
pub(super) const TRANSACTION_BITS: usize = 1 << 20;

/// Bits set per key.
const HASHES: u64 = 5;

/// Keys given to it; never answers "not seen" for one of those.
#[derive(Debug)]
pub(in crate::store) struct Seen {
    words: Vec<u64>,
}

impl Seen {
    /// A filter of `bits` bits, a power of two.
    pub fn new(bits: usize) -> Self {
        debug_assert!(bits.is_power_of_two() && bits >= 64);
        Self {
            words: vec![0; bits / 64],
        }
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.words.fill(0);
    }

    /// The filter's bit positions for a key. A sync key is a SHA-256 digest, so its halves
    /// are already independent uniform hashes (double hashing needs no more).
    fn positions(&self, key: &[u8; 16]) -> impl Iterator<Item = usize> + use<> {
        let (a, b) = key.split_at(8);
        let h1 = u64::from_le_bytes(a.try_into().unwrap_or_default());
        let h2 = u64::from_le_bytes(b.try_into().unwrap_or_default()) | 1;
        let mask = self.words.len() * 64 - 1;
        (0..HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) as usize) & mask)
    }

    pub fn insert(&mut self, key: &[u8; 16]) {
        for bit in self.positions(key) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// `false` only for a key never inserted.
    pub fn may_contain(&self, key: &[u8; 16]) -> bool {
        self.positions(key)
            .all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::{INGEST_BITS, Seen, TRANSACTION_BITS};
    use crate::store::fixtures::key_of;

    #[test]
    fn a_key_inserted_is_always_found_and_others_seldom() {
        let mut seen = Seen::new(INGEST_BITS);
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

    #[test]
    fn a_transaction_of_keys_misleads_one_probe_in_a_hundred_and_clears() {
        let mut written = Seen::new(TRANSACTION_BITS);
        let keys: Vec<[u8; 16]> = (0..100_000).map(|i| key_of(&format!("t{i}"))).collect();
        for key in &keys {
            written.insert(key);
        }
        assert!(keys.iter().all(|k| written.may_contain(k)));
        let false_hits = (0..100_000)
            .filter(|i| written.may_contain(&key_of(&format!("u{i}"))))
            .count();
        assert!(
            false_hits < 2_000,
            "{false_hits} keys never inserted taken for written"
        );
        written.clear();
        assert!(!keys.iter().any(|k| written.may_contain(k)));
    }
}

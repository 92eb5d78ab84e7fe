//! The sync key of a row: what identifies "the same thing" across nightly exports.
//!
//! A snapshot export has one row per ticket, so the key is the `ticket_id`; an event export
//! (one row per comment or status change) adds the columns its mapping names under
//! `[delta] key`, so each event is sent once ever.

use sha2::{Digest, Sha256};

/// The 16-byte digest stored in `jobs.sync_key`. Parts are length-prefixed, so no choice of
/// values can make two different keys collide by shifting text between parts.
pub fn sync_key<'a>(ticket_id: &'a str, key_values: impl IntoIterator<Item = &'a str>) -> [u8; 16] {
    let mut hasher = Sha256::new();
    for part in std::iter::once(ticket_id).chain(key_values) {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_kept_apart() {
        assert_eq!(sync_key("1", []), sync_key("1", []));
        assert_ne!(sync_key("1", []), sync_key("2", []));
        assert_ne!(sync_key("1", ["23"]), sync_key("12", ["3"]));
        assert_ne!(sync_key("1", ["a", ""]), sync_key("1", ["a"]));
    }
}

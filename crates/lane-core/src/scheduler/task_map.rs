//! The map of live commands by id, hashed for locality.
//!
//! Ids are handed out in increasing order and commands mostly end in about that order,
//! so the live ids form a sliding window. A scrambling hash (Fx, SipHash) scatters that
//! window over the whole table and every insert and remove misses the cache once the
//! table outgrows it (100,000 pending commands: ~2 MiB). [`IdHasher`] keeps an id's low
//! bits as the bucket index, so neighbouring ids share cache lines, and puts scrambled
//! bits in the top 7, which hashbrown uses as the tag it filters candidates by.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::command::CommandId;

/// Every live command by id.
pub(crate) type TaskMap<V> = HashMap<CommandId, V, BuildHasherDefault<IdHasher>>;

/// Golden-ratio multiplier: its product's top bits depend on every bit of the id.
const SCRAMBLE: u64 = 0x9E37_79B9_7F4A_7C15;
/// The top 7 bits (hashbrown's tag).
const TAG_BITS: u64 = 0x7F << 57;

/// Hashes a command id to itself in its low 57 bits and to a scrambled tag in its top
/// 7 (see the module docs). Ids are the queue's own, not attacker-chosen keys.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write_u64(&mut self, id: u64) {
        self.0 = id ^ (id.wrapping_mul(SCRAMBLE) & TAG_BITS);
    }

    /// Not used by `u64` keys; folds arbitrary bytes in so the hasher stays total.
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    fn hash(id: CommandId) -> u64 {
        BuildHasherDefault::<IdHasher>::default().hash_one(id)
    }

    #[test]
    fn consecutive_ids_get_consecutive_buckets_and_varied_tags() {
        let tags: std::collections::HashSet<u64> = (1..=1_000).map(|id| hash(id) >> 57).collect();
        for id in 1..1_000u64 {
            assert_eq!(hash(id) & ((1 << 57) - 1), id);
        }
        assert!(tags.len() > 100, "only {} distinct tags", tags.len());
    }

    #[test]
    fn a_map_of_ids_finds_what_it_holds() {
        let mut map = TaskMap::default();
        for id in (0..10_000u64).chain([u64::MAX, u64::MAX - 1, 1 << 60]) {
            map.insert(id, id.wrapping_mul(2));
        }
        for id in (0..10_000u64).step_by(2) {
            assert_eq!(map.remove(&id), Some(id * 2));
        }
        assert_eq!(map.len(), 5_003);
        assert_eq!(map.get(&9_999), Some(&19_998));
        assert_eq!(map.get(&u64::MAX), Some(&u64::MAX.wrapping_mul(2)));
        assert_eq!(map.get(&4), None);
    }
}

//! Word interning and the 1..4-gram counts shared by BLEU and CIDEr-D.
//!
//! Words are interned to dense ids once per corpus so that n-grams become a single `u128` key (four
//! 32-bit slots, id + 1 each, 0 = unused), which hashes and compares far faster than tuples of strings.
//! Counts keep the order in which pycocoevalcap's `precook` first meets each n-gram (all unigrams left to
//! right, then bigrams, …), because CIDEr-D's sums run in that order and we reproduce them bit for bit.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Largest n-gram order used by BLEU and CIDEr-D.
pub const MAX_N: usize = 4;

/// A small, fast, deterministic hasher for integer keys (the multiply-rotate scheme of rustc's FxHash).
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// An n-gram of interned words, n = 1..=4.
pub type NgramKey = u128;

/// Maps words to dense ids.
#[derive(Default, Debug, Clone)]
pub struct Vocab {
    ids: HashMap<String, u32>,
}

impl Vocab {
    pub fn id(&mut self, word: &str) -> u32 {
        if let Some(&id) = self.ids.get(word) {
            return id;
        }
        let id = u32::try_from(self.ids.len()).expect("more than 4 billion distinct words");
        self.ids.insert(word.to_owned(), id);
        id
    }

    /// The id of a word already interned, if any.
    pub fn get(&self, word: &str) -> Option<u32> {
        self.ids.get(word).copied()
    }
}

/// The key of `words` (1..=4 of them).
#[inline]
pub fn key(words: &[u32]) -> NgramKey {
    debug_assert!((1..=MAX_N).contains(&words.len()));
    let mut k: u128 = 0;
    for (slot, &w) in words.iter().enumerate() {
        k |= u128::from(w + 1) << (32 * slot);
    }
    k
}

/// Every 1..=4-gram of a sentence with its count, per order, in first-occurrence order.
#[derive(Debug, Clone, Default)]
pub struct NgramCounts {
    /// `by_order[n - 1]` holds the n-grams of order n.
    pub by_order: [Vec<(NgramKey, u32)>; MAX_N],
}

impl NgramCounts {
    pub fn new(words: &[u32]) -> Self {
        let mut by_order: [Vec<(NgramKey, u32)>; MAX_N] = Default::default();
        let mut index: FastMap<NgramKey, usize> = FastMap::default();
        for n in 1..=MAX_N {
            let list = &mut by_order[n - 1];
            if words.len() < n {
                continue;
            }
            index.clear();
            for window in words.windows(n) {
                let k = key(window);
                match index.get(&k) {
                    Some(&at) => list[at].1 += 1,
                    None => {
                        index.insert(k, list.len());
                        list.push((k, 1));
                    }
                }
            }
        }
        NgramCounts { by_order }
    }

    /// All n-grams of all orders.
    pub fn iter(&self) -> impl Iterator<Item = (NgramKey, u32)> + '_ {
        self.by_order.iter().flat_map(|v| v.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_distinguish_orders() {
        assert_ne!(key(&[0]), key(&[0, 0]));
        assert_ne!(key(&[7, 0, 3]), key(&[7, 0, 3, 0]));
    }

    #[test]
    fn counts_follow_precook() {
        // "the the the cat": unigrams the×3, cat×1; bigrams (the the)×2, (the cat)×1; …
        let c = NgramCounts::new(&[0, 0, 0, 1]);
        assert_eq!(c.by_order[0], vec![(key(&[0]), 3), (key(&[1]), 1)]);
        assert_eq!(c.by_order[1], vec![(key(&[0, 0]), 2), (key(&[0, 1]), 1)]);
        assert_eq!(c.by_order[3], vec![(key(&[0, 0, 0, 1]), 1)]);
        assert!(NgramCounts::new(&[]).iter().next().is_none());
    }
}

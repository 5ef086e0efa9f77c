//! Deterministic, resumable training order and reference choice.
//!
//! * Each epoch visits every training item once, in a permutation drawn from `(seed, epoch)` alone, so epoch 7
//!   is the same whether or not epochs 0-6 ran in this process.
//! * Each step trains on one of the item's references, drawn from `(seed, epoch, position)` alone (the seed
//!   project drew `np.random.randint(5)` per step), optionally lowercased as big_vision's `preprocess_tokens`
//!   did. Evaluation keeps every reference (see [`EvalSet`]).
//! * A [`Cursor`] `(epoch, position)` is all a checkpoint needs: a resumed run sees exactly the samples a
//!   straight run would.
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Dataset, Split};

/// Where a training run is in its data: the next sample is `order(epoch)[position]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub epoch: u64,
    pub position: usize,
}

/// One training example: which item, which reference, and where it sat in the data order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Index into [`Dataset::items`].
    pub item: usize,
    /// Index of the chosen reference in the item's captions.
    pub caption_index: usize,
    /// The chosen reference (lowercased if the sampler was asked to).
    pub caption: String,
    /// The cursor this sample was drawn at.
    pub at: Cursor,
}

/// Seeded epoch shuffler with per-step reference choice.
#[derive(Debug, Clone)]
pub struct TrainSampler {
    items: Vec<usize>,
    seed: u64,
    lowercase: bool,
    cursor: Cursor,
    order: Vec<usize>,
    order_epoch: Option<u64>,
}

/// SplitMix64 finalizer: turns structured (seed, epoch, position) triples into independent RNG seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl TrainSampler {
    /// Samples over the given item indices (for instance the train split's items that have captions).
    pub fn new(items: Vec<usize>, seed: u64, lowercase: bool) -> Self {
        TrainSampler {
            items,
            seed,
            lowercase,
            cursor: Cursor::default(),
            order: Vec::new(),
            order_epoch: None,
        }
    }

    /// Samples over a split's items that have at least one non-empty caption.
    pub fn for_split(ds: &Dataset, split: &Split, seed: u64, lowercase: bool) -> Self {
        let items = ds
            .split(split)
            .filter(|i| i.captions.iter().any(|c| !c.trim().is_empty()))
            .map(|i| i.id)
            .collect();
        TrainSampler::new(items, seed, lowercase)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Continues from a saved cursor.
    pub fn resume(&mut self, cursor: Cursor) {
        self.cursor = cursor;
    }

    /// The item order of `epoch`: a pure function of the seed and the epoch.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order = self.items.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed ^ mix(epoch)));
        order.shuffle(&mut rng);
        order
    }

    /// The next training sample, advancing the cursor (and the epoch at its end).
    /// Panics if the sampler has no items or an item has no captions (use [`TrainSampler::for_split`]).
    pub fn next_sample(&mut self, ds: &Dataset) -> Sample {
        assert!(!self.items.is_empty(), "TrainSampler has no items");
        if self.order_epoch != Some(self.cursor.epoch) {
            self.order = self.order(self.cursor.epoch);
            self.order_epoch = Some(self.cursor.epoch);
        }
        let at = self.cursor;
        let item = self.order[at.position];
        let captions = &ds.items[item].captions;
        assert!(!captions.is_empty(), "item {item} ({}) has no captions", ds.items[item].filename);
        let seed = mix(mix(self.seed ^ mix(at.epoch)) ^ at.position as u64);
        let caption_index = ChaCha8Rng::seed_from_u64(seed).random_range(0..captions.len());
        let caption = &captions[caption_index];
        let caption = if self.lowercase { caption.to_lowercase() } else { caption.clone() };
        self.cursor.position += 1;
        if self.cursor.position == self.items.len() {
            self.cursor = Cursor { epoch: at.epoch + 1, position: 0 };
        }
        Sample { item, caption_index, caption, at }
    }

    /// The next `n` samples (a batch may straddle an epoch boundary, as a straight stream does).
    pub fn next_batch(&mut self, ds: &Dataset, n: usize) -> Vec<Sample> {
        (0..n).map(|_| self.next_sample(ds)).collect()
    }
}

/// A fixed evaluation subset: the same items, in file order, every time it is evaluated (the seed project
/// reshuffled val before every evaluation, so its curves compared different images). All references kept.
#[derive(Debug, Clone)]
pub struct EvalSet {
    pub items: Vec<usize>,
}

impl EvalSet {
    /// The split's items with at least one caption; `limit` keeps an evenly spaced subset of that size.
    pub fn new(ds: &Dataset, split: &Split, limit: Option<usize>) -> Self {
        let all: Vec<usize> =
            ds.split(split).filter(|i| !i.captions.is_empty()).map(|i| i.id).collect();
        let items = match limit {
            Some(n) if n < all.len() => (0..n).map(|k| all[k * all.len() / n]).collect(),
            _ => all,
        };
        EvalSet { items }
    }

    /// `(item index, all references)` in order.
    pub fn references<'a>(
        &'a self,
        ds: &'a Dataset,
    ) -> impl Iterator<Item = (usize, &'a [String])> + 'a {
        self.items.iter().map(move |&i| (i, ds.items[i].captions.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, Item};

    fn toy(n: usize) -> Dataset {
        let items = (0..n)
            .map(|i| Item {
                id: i,
                filename: format!("{i}.png"),
                split: if i % 5 == 4 { Split::Val } else { Split::Train },
                captions: (0..5).map(|k| format!("Caption {k} of image {i}")).collect(),
                class: None,
                source: None,
                image_path: None,
                image_bytes: None,
                origin: String::new(),
            })
            .collect();
        Dataset {
            format: Format::Karpathy,
            annotation_files: vec![],
            image_dir: None,
            items,
            notes: vec![],
        }
    }

    #[test]
    fn epochs_are_permutations_and_differ() {
        let ds = toy(50);
        let s = TrainSampler::for_split(&ds, &Split::Train, 42, false);
        let (e0, e1) = (s.order(0), s.order(1));
        let mut sorted = e0.clone();
        sorted.sort();
        assert_eq!(sorted, ds.split(&Split::Train).map(|i| i.id).collect::<Vec<_>>());
        assert_ne!(e0, e1);
        assert_eq!(e0, TrainSampler::for_split(&ds, &Split::Train, 42, false).order(0));
        assert_ne!(e0, TrainSampler::for_split(&ds, &Split::Train, 43, false).order(0));
    }

    #[test]
    fn resumed_run_sees_exactly_the_straight_run() {
        let ds = toy(23);
        let mut straight = TrainSampler::for_split(&ds, &Split::Train, 7, true);
        let all = straight.next_batch(&ds, 100);
        let mut first = TrainSampler::for_split(&ds, &Split::Train, 7, true);
        let head = first.next_batch(&ds, 37);
        let saved = serde_json::to_string(&first.cursor()).unwrap();
        let mut resumed = TrainSampler::for_split(&ds, &Split::Train, 7, true);
        resumed.resume(serde_json::from_str(&saved).unwrap());
        let tail = resumed.next_batch(&ds, 63);
        assert_eq!([head, tail].concat(), all);
        assert!(all.iter().all(|s| s.caption.starts_with("caption")), "lowercased");
        // Every reference gets used: the choice is not stuck on one index.
        let used: std::collections::BTreeSet<usize> = all.iter().map(|s| s.caption_index).collect();
        assert_eq!(used.len(), 5);
    }

    #[test]
    fn eval_set_is_fixed_and_keeps_all_references() {
        let ds = toy(50);
        let e = EvalSet::new(&ds, &Split::Val, Some(4));
        assert_eq!(e.items, vec![4, 14, 29, 39]);
        assert!(e.references(&ds).all(|(_, refs)| refs.len() == 5));
    }
}

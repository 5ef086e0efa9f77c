//! Exploratory statistics of a captioning dataset (`cargo xtask eda` renders them as `stats.json`, plots and
//! `report.html`). Beyond caption lengths and vocabulary, this also
//! measures what decides training: token lengths, duplicate references, n-gram diversity, image properties.
//! Every present image is checked without decoding (format, dimensions, size limit, complete data: see
//! `decode::probe_file`) and the failures are reported as unreadable; statistics come from a decoded sample
//! of the sound ones, and sampled images that fail to decode are reported too.
//!
//! Definitions (mirrored exactly by `scripts/data/gen_eda_expected.py`, which the tests compare against):
//! * a *word* is a maximal run of alphanumeric characters of the lowercased caption (punctuation is no word);
//! * a caption's *normal form* is its words joined by single spaces (duplicates ignore case and punctuation);
//! * *distinct-n* is the number of distinct word n-grams over all captions divided by the number of n-grams;
//! * medians and percentiles interpolate linearly between order statistics (numpy's default).
use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::decode::to_rgb8;
use crate::Dataset;

/// English function words left out of the "content words" ranking (written for this crate; the usual lists
/// differ only in rare words).
pub const STOP_WORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both",
    "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few",
    "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "him",
    "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "may", "me",
    "might", "more", "most", "must", "my", "no", "nor", "not", "now", "of", "off", "on", "once",
    "only", "or", "other", "our", "ours", "out", "over", "own", "same", "she", "should", "so",
    "some", "such", "than", "that", "the", "their", "theirs", "them", "then", "there", "these",
    "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we",
    "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with",
    "would", "you", "your",
];

/// Lowercased words of a caption (see the module header).
pub fn words(caption: &str) -> Vec<String> {
    caption
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub median: f64,
    pub p95: f64,
    pub p99: f64,
}

/// numpy-style linear-interpolation percentile of sorted data.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

impl Summary {
    pub fn of(values: &[usize]) -> Summary {
        let mut v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
        v.sort_by(f64::total_cmp);
        Summary {
            count: v.len(),
            min: v.first().copied().unwrap_or(0.0),
            max: v.last().copied().unwrap_or(0.0),
            mean: if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 },
            median: percentile(&v, 0.5),
            p95: percentile(&v, 0.95),
            p99: percentile(&v, 0.99),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LengthStats {
    pub summary: Summary,
    /// length -> number of captions
    pub histogram: BTreeMap<usize, usize>,
}

impl LengthStats {
    fn of(lengths: &[usize]) -> LengthStats {
        let mut histogram = BTreeMap::new();
        lengths.iter().for_each(|&l| *histogram.entry(l).or_insert(0) += 1);
        LengthStats { summary: Summary::of(lengths), histogram }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NgramDiversity {
    pub n: usize,
    pub distinct: usize,
    pub total: usize,
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageStats {
    /// Images whose file (or embedded bytes) was checked without decoding: all present images
    /// ([`crate::Item::probe_image`]: recognised format, dimensions, size limit, data complete).
    pub checked: usize,
    /// Images that are errors: failed that check, or failed to decode in the sample. Never part of the
    /// statistics below.
    pub unreadable: usize,
    /// The first of them, each naming the file and the problem.
    pub unreadable_examples: Vec<String>,
    /// Images decoded for these statistics (an evenly spaced sample of the checked ones when the dataset is
    /// large).
    pub decoded: usize,
    /// Sampled images that passed the check but failed to decode (corrupt pixel data).
    pub failed: usize,
    /// `WxH` -> count
    pub sizes: BTreeMap<String, usize>,
    /// Decoded pixel layout (`Rgb8`, `L16`, `Rgba8`, …) -> count
    pub color_types: BTreeMap<String, usize>,
    /// Per-channel mean and standard deviation of RGB values in [0, 255], over all decoded pixels.
    pub channel_mean: [f64; 3],
    pub channel_std: [f64; 3],
    /// Items (ids) picked for the thumbnail grid, spread evenly over the dataset.
    pub thumbnails: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EdaStats {
    pub format: String,
    pub images: usize,
    pub captions: usize,
    pub per_split: BTreeMap<String, crate::Counts>,
    pub per_class: BTreeMap<String, usize>,
    pub per_source: BTreeMap<String, usize>,
    pub words: LengthStats,
    /// Caption lengths in tokenizer tokens (without BOS/EOS), when a tokenizer was given.
    pub tokens: Option<LengthStats>,
    pub vocabulary_size: usize,
    pub top_words: Vec<(String, usize)>,
    pub top_content_words: Vec<(String, usize)>,
    /// Distinct captions overall (normal form) and their share of all captions.
    pub unique_captions: usize,
    pub unique_caption_ratio: f64,
    /// Distinct captions per image (normal form) -> number of images.
    pub distinct_per_image: BTreeMap<usize, usize>,
    /// Images whose references are all the same sentence (RSICD repeats one sentence five times).
    pub images_all_identical: usize,
    pub top_captions: Vec<(String, usize)>,
    pub ngram_diversity: Vec<NgramDiversity>,
    pub image_stats: Option<ImageStats>,
}

#[derive(Debug, Clone)]
pub struct EdaOptions {
    pub top_k: usize,
    /// Images decoded at most for image statistics (evenly spaced sample); 0 disables image statistics.
    pub max_images: usize,
    pub thumbnails: usize,
}

impl Default for EdaOptions {
    fn default() -> Self {
        EdaOptions { top_k: 30, max_images: 2000, thumbnails: 12 }
    }
}

fn top(
    counts: HashMap<String, usize>,
    k: usize,
    keep: impl Fn(&str) -> bool,
) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = counts.into_iter().filter(|(w, _)| keep(w)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

/// Computes every statistic. `count_tokens` (e.g. a HF tokenizer) gives caption lengths in tokens.
pub fn compute(
    ds: &Dataset,
    opts: &EdaOptions,
    count_tokens: Option<&(dyn Fn(&str) -> usize + Sync)>,
) -> EdaStats {
    let all: Vec<&str> =
        ds.items.iter().flat_map(|i| i.captions.iter().map(String::as_str)).collect();
    let tokenized: Vec<Vec<String>> = all.par_iter().map(|c| words(c)).collect();
    let lengths: Vec<usize> = tokenized.iter().map(Vec::len).collect();
    let tokens =
        count_tokens.map(|f| LengthStats::of(&all.par_iter().map(|c| f(c)).collect::<Vec<_>>()));

    let mut word_counts: HashMap<String, usize> = HashMap::new();
    for w in tokenized.iter().flatten() {
        *word_counts.entry(w.clone()).or_insert(0) += 1;
    }
    let vocabulary_size = word_counts.len();
    let stop: HashSet<&str> = STOP_WORDS.iter().copied().collect();
    let top_content_words = top(word_counts.clone(), opts.top_k, |w| !stop.contains(w));
    let top_words = top(word_counts, opts.top_k, |_| true);

    let normal: Vec<String> = tokenized.iter().map(|w| w.join(" ")).collect();
    let mut caption_counts: HashMap<String, usize> = HashMap::new();
    normal.iter().for_each(|n| *caption_counts.entry(n.clone()).or_insert(0) += 1);
    let unique_captions = caption_counts.len();
    let mut distinct_per_image = BTreeMap::new();
    let mut images_all_identical = 0;
    let mut offset = 0;
    for item in &ds.items {
        let n = item.captions.len();
        let distinct: HashSet<&str> =
            normal[offset..offset + n].iter().map(String::as_str).collect();
        *distinct_per_image.entry(distinct.len()).or_insert(0) += 1;
        if n > 1 && distinct.len() == 1 {
            images_all_identical += 1;
        }
        offset += n;
    }

    let ngram_diversity = (1..=4)
        .map(|n| {
            let mut set: HashSet<&[String]> = HashSet::new();
            let mut total = 0;
            for w in &tokenized {
                for g in w.windows(n) {
                    set.insert(g);
                    total += 1;
                }
            }
            let ratio = if total == 0 { 0.0 } else { set.len() as f64 / total as f64 };
            NgramDiversity { n, distinct: set.len(), total, ratio }
        })
        .collect();

    let mut per_class = BTreeMap::new();
    let mut per_source = BTreeMap::new();
    for item in &ds.items {
        if let Some(c) = &item.class {
            *per_class.entry(c.clone()).or_insert(0) += 1;
        }
        if let Some(s) = &item.source {
            *per_source.entry(s.clone()).or_insert(0) += 1;
        }
    }

    EdaStats {
        format: ds.format.name().to_string(),
        images: ds.items.len(),
        captions: all.len(),
        per_split: ds.counts_by_split(),
        per_class,
        per_source,
        words: LengthStats::of(&lengths),
        tokens,
        vocabulary_size,
        top_words,
        top_content_words,
        unique_captions,
        unique_caption_ratio: if all.is_empty() {
            0.0
        } else {
            unique_captions as f64 / all.len() as f64
        },
        distinct_per_image,
        images_all_identical,
        top_captions: top(caption_counts, 10, |_| true),
        ngram_diversity,
        image_stats: image_stats(ds, opts),
    }
}

fn image_stats(ds: &Dataset, opts: &EdaOptions) -> Option<ImageStats> {
    if opts.max_images == 0 {
        return None;
    }
    let present: Vec<usize> = ds.items.par_iter().filter(|i| i.has_image()).map(|i| i.id).collect();
    if present.is_empty() {
        return None;
    }
    // Every present image is checked (fast: no pixels are decoded); only sound ones are sampled.
    let probed: Vec<Result<usize, String>> = present
        .par_iter()
        .map(|&id| ds.items[id].probe_image().map(|_| id).map_err(|e| e.to_string()))
        .collect();
    let mut problems: Vec<(usize, String)> = Vec::new();
    let mut with_images: Vec<usize> = Vec::with_capacity(present.len());
    for (&id, r) in present.iter().zip(probed) {
        match r {
            Ok(id) => with_images.push(id),
            Err(e) => problems.push((id, e)),
        }
    }
    if with_images.is_empty() {
        return Some(ImageStats {
            checked: present.len(),
            unreadable: problems.len(),
            unreadable_examples: problems.into_iter().take(10).map(|(_, e)| e).collect(),
            decoded: 0,
            failed: 0,
            sizes: BTreeMap::new(),
            color_types: BTreeMap::new(),
            channel_mean: [0.0; 3],
            channel_std: [0.0; 3],
            thumbnails: Vec::new(),
        });
    }
    let n = with_images.len().min(opts.max_images);
    let sample: Vec<usize> = (0..n).map(|k| with_images[k * with_images.len() / n]).collect();
    struct One {
        size: (u32, u32),
        color: String,
        sum: [f64; 3],
        sumsq: [f64; 3],
        pixels: f64,
    }
    let results: Vec<Result<One, String>> = sample
        .par_iter()
        .map(|&id| {
            let img = ds.items[id].decode_image().map_err(|e| e.to_string())?;
            let rgb = to_rgb8(&img);
            let mut sum = [0f64; 3];
            let mut sumsq = [0f64; 3];
            for p in rgb.pixels() {
                for c in 0..3 {
                    let v = f64::from(p.0[c]);
                    sum[c] += v;
                    sumsq[c] += v * v;
                }
            }
            Ok(One {
                size: (img.width(), img.height()),
                color: format!("{:?}", img.color()),
                sum,
                sumsq,
                pixels: f64::from(img.width()) * f64::from(img.height()),
            })
        })
        .collect();
    let mut sizes = BTreeMap::new();
    let mut color_types = BTreeMap::new();
    let (mut sum, mut sumsq, mut pixels) = ([0f64; 3], [0f64; 3], 0f64);
    let mut failed = 0;
    for (&id, r) in sample.iter().zip(&results) {
        match r {
            Ok(o) => {
                *sizes.entry(format!("{}x{}", o.size.0, o.size.1)).or_insert(0) += 1;
                *color_types.entry(o.color.clone()).or_insert(0) += 1;
                for c in 0..3 {
                    sum[c] += o.sum[c];
                    sumsq[c] += o.sumsq[c];
                }
                pixels += o.pixels;
            }
            Err(e) => {
                failed += 1;
                problems.push((id, e.clone()));
            }
        }
    }
    problems.sort_by_key(|(id, _)| *id);
    let mean = sum.map(|s| if pixels > 0.0 { s / pixels } else { 0.0 });
    let std = std::array::from_fn(|c| {
        if pixels > 0.0 {
            (sumsq[c] / pixels - mean[c] * mean[c]).max(0.0).sqrt()
        } else {
            0.0
        }
    });
    let t = with_images.len().min(opts.thumbnails);
    let thumbnails = (0..t).map(|k| with_images[k * with_images.len() / t]).collect();
    Some(ImageStats {
        checked: present.len(),
        unreadable: problems.len(),
        unreadable_examples: problems.into_iter().take(10).map(|(_, e)| e).collect(),
        decoded: results.len() - failed,
        failed,
        sizes,
        color_types,
        channel_mean: mean,
        channel_std: std,
        thumbnails,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_percentiles() {
        assert_eq!(
            words("The  river's bend, 2 bridges ."),
            vec!["the", "river", "s", "bend", "2", "bridges"]
        );
        let s = Summary::of(&[1, 2, 3, 4]);
        assert_eq!((s.median, s.mean, s.min, s.max), (2.5, 2.5, 1.0, 4.0));
        assert!((s.p95 - 3.85).abs() < 1e-12);
    }
}

//! Dataset validation, run by `cargo xtask validate` and before training.
//!
//! Problems found: missing or unreadable images (truncated, corrupt, oversized:
//! decoded in full, or with `decode_images: false` probed for structure only), duplicate filenames, images with no
//! captions, empty captions (nothing but spaces and punctuation: RSICD has three `" ."`), captions holding PaliGemma special tokens (`<image>`, `<bos>`,
//! `<loc0001>`, `<seg042>`, … which would corrupt the sequence layout), unknown splits, images with fewer than
//! 5 distinct captions (RSICD's repeated sentences), and unexpected image sizes. Each problem kind has a count
//! and the first examples, with the annotation location to fix.
use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::Dataset;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Breaks training or evaluation; `--strict` exits non-zero.
    Error,
    /// Worth knowing (data quality), never fatal.
    Warning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    MissingImage,
    UnreadableImage,
    DuplicateFilename,
    NoCaptions,
    EmptyCaption,
    SpecialToken,
    UnknownSplit,
    FewDistinctCaptions,
    UnexpectedImageSize,
    NoImages,
}

impl Check {
    pub fn severity(self) -> Severity {
        match self {
            Check::FewDistinctCaptions | Check::UnexpectedImageSize | Check::NoImages => {
                Severity::Warning
            }
            _ => Severity::Error,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Check::MissingImage => "image file missing",
            Check::UnreadableImage => "image file cannot be decoded",
            Check::DuplicateFilename => "filename listed more than once",
            Check::NoCaptions => "image without captions",
            Check::EmptyCaption => "empty caption (no letters or digits, e.g. \" .\")",
            Check::SpecialToken => "caption holds a special token",
            Check::UnknownSplit => "split is not train/val/test",
            Check::FewDistinctCaptions => "image with fewer distinct captions than expected",
            Check::UnexpectedImageSize => "image size differs from the expected one",
            Check::NoImages => "no image folder: images not checked",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// Decode every image (slow-ish, parallel). When false, each image is only probed: present, recognised,
    /// dimensions readable and within the pixel limit, data complete (end-of-image marker, `IEND`, strips
    /// inside the file), which catches truncated files but not corrupt pixel data.
    pub decode_images: bool,
    /// Expected `(width, height)`; `None` flags sizes that differ from the most common one.
    pub expected_size: Option<(u32, u32)>,
    /// Minimum number of distinct captions per image (5 for RSICD/UCM/Sydney/RISCM).
    pub min_distinct_captions: usize,
    /// Examples kept per problem kind.
    pub max_examples: usize,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            decode_images: true,
            expected_size: None,
            min_distinct_captions: 5,
            max_examples: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: Check,
    pub severity: Severity,
    pub description: &'static str,
    pub count: usize,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    pub images: usize,
    pub captions: usize,
    pub images_checked: usize,
    /// `WxH` -> count, over the images that were decoded (or probed).
    pub image_sizes: BTreeMap<String, usize>,
    pub findings: Vec<Finding>,
}

impl ValidationReport {
    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Error).map(|f| f.count).sum()
    }

    pub fn warnings(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Warning).map(|f| f.count).sum()
    }

    pub fn count(&self, check: Check) -> usize {
        self.findings.iter().find(|f| f.check == check).map_or(0, |f| f.count)
    }
}

/// Special tokens of the PaliGemma/Gemma vocabulary that must never appear in caption text.
pub fn find_special_token(caption: &str) -> Option<&str> {
    const NAMED: [&str; 8] = [
        "<image>",
        "<bos>",
        "<eos>",
        "<pad>",
        "<unk>",
        "<mask>",
        "<start_of_turn>",
        "<end_of_turn>",
    ];
    let mut rest = caption;
    while let Some(start) = rest.find('<') {
        let tail = &rest[start..];
        let Some(end) = tail.find('>') else { break };
        let tok = &tail[..=end];
        let inner = &tok[1..tok.len() - 1];
        let digits = |prefix: &str, n: usize| {
            inner
                .strip_prefix(prefix)
                .is_some_and(|d| d.len() == n && d.bytes().all(|b| b.is_ascii_digit()))
        };
        if NAMED.contains(&tok)
            || digits("loc", 4)
            || digits("seg", 3)
            || inner.starts_with("unused")
        {
            return Some(tok);
        }
        rest = &tail[1..];
    }
    None
}

struct Collector {
    max: usize,
    found: BTreeMap<Check, (usize, Vec<String>)>,
}

impl Collector {
    fn add(&mut self, check: Check, example: impl FnOnce() -> String) {
        let e = self.found.entry(check).or_default();
        e.0 += 1;
        if e.1.len() < self.max {
            e.1.push(example());
        }
    }
}

pub fn validate(ds: &Dataset, opts: &ValidateOptions) -> ValidationReport {
    let mut c = Collector { max: opts.max_examples, found: BTreeMap::new() };
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for item in &ds.items {
        let at = &item.origin;
        if let Some(first) = seen.insert(item.filename.as_str(), at.as_str()) {
            c.add(Check::DuplicateFilename, || {
                format!("{} at {at} (first at {first})", item.filename)
            });
        }
        if !item.split.is_known() {
            c.add(Check::UnknownSplit, || {
                format!("{}: split {:?} ({at})", item.filename, item.split.as_str())
            });
        }
        if item.captions.is_empty() {
            c.add(Check::NoCaptions, || format!("{} ({at})", item.filename));
        }
        for (k, cap) in item.captions.iter().enumerate() {
            if !cap.chars().any(char::is_alphanumeric) {
                c.add(Check::EmptyCaption, || {
                    format!("{} caption {k} ({at}): {cap:?}", item.filename)
                });
            }
            if let Some(tok) = find_special_token(cap) {
                c.add(Check::SpecialToken, || {
                    format!("{} caption {k} ({at}): {tok} in {cap:?}", item.filename)
                });
            }
        }
        // Distinct in the EDA's normal form (case and punctuation ignored), empty captions not counted.
        let distinct: HashSet<String> = item
            .captions
            .iter()
            .map(|s| crate::eda::words(s).join(" "))
            .filter(|s| !s.is_empty())
            .collect();
        if !item.captions.is_empty() && distinct.len() < opts.min_distinct_captions {
            c.add(Check::FewDistinctCaptions, || {
                format!(
                    "{}: {} distinct of {} ({at})",
                    item.filename,
                    distinct.len(),
                    item.captions.len()
                )
            });
        }
    }

    let mut image_sizes = BTreeMap::new();
    let mut images_checked = 0;
    let any_images = ds.image_dir.is_some() || ds.items.iter().any(|i| i.image_bytes.is_some());
    if !any_images {
        c.add(Check::NoImages, || ds.notes.first().cloned().unwrap_or_default());
    } else {
        // Per item: Ok(size) decoded or probed, Err((check, message)).
        type ImageCheck = Result<(u32, u32), (Check, String)>;
        let results: Vec<ImageCheck> = ds
            .items
            .par_iter()
            .map(|item| {
                if item.image_bytes.is_none() {
                    let Some(path) = item.image_path.as_ref() else {
                        return Err((
                            Check::MissingImage,
                            format!("{}: no image folder for it ({})", item.filename, item.origin),
                        ));
                    };
                    if !path.is_file() {
                        return Err((
                            Check::MissingImage,
                            format!("{} ({})", path.display(), item.origin),
                        ));
                    }
                }
                if !opts.decode_images {
                    return item.probe_image().map_err(|e| (Check::UnreadableImage, e.to_string()));
                }
                item.decode_image()
                    .map(|img| (img.width(), img.height()))
                    .map_err(|e| (Check::UnreadableImage, e.to_string()))
            })
            .collect();
        let mut sizes: Vec<(usize, (u32, u32))> = Vec::new();
        for (item, r) in ds.items.iter().zip(results) {
            match r {
                Ok(size) => {
                    images_checked += 1;
                    *image_sizes.entry(format!("{}x{}", size.0, size.1)).or_insert(0) += 1;
                    sizes.push((item.id, size));
                }
                Err((check, msg)) => c.add(check, || msg),
            }
        }
        let expected = opts.expected_size.or_else(|| {
            let mut counts: HashMap<(u32, u32), usize> = HashMap::new();
            sizes.iter().for_each(|(_, s)| *counts.entry(*s).or_default() += 1);
            counts.into_iter().max_by_key(|&(s, n)| (n, std::cmp::Reverse(s))).map(|(s, _)| s)
        });
        if let Some((w, h)) = expected {
            for &(id, size) in &sizes {
                if size != (w, h) {
                    c.add(Check::UnexpectedImageSize, || {
                        format!(
                            "{}: {}x{}, expected {w}x{h}",
                            ds.items[id].filename, size.0, size.1
                        )
                    });
                }
            }
        }
    }

    let findings = c
        .found
        .into_iter()
        .map(|(check, (count, examples))| Finding {
            check,
            severity: check.severity(),
            description: check.describe(),
            count,
            examples,
        })
        .collect();
    ValidationReport {
        images: ds.items.len(),
        captions: ds.caption_count(),
        images_checked,
        image_sizes,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_tokens() {
        assert_eq!(find_special_token("a <image> here"), Some("<image>"));
        assert_eq!(find_special_token("box <loc0001><loc1023>"), Some("<loc0001>"));
        assert_eq!(find_special_token("<seg042> mask"), Some("<seg042>"));
        assert_eq!(find_special_token("x < y and y > z"), None);
        assert_eq!(find_special_token("<loc12> is not a token"), None);
        assert_eq!(find_special_token("plain caption ."), None);
    }
}

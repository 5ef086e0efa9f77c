//! The in-memory dataset model every command and the trainer share: one [`Item`] per image with all its
//! reference captions, whatever the on-disk format was.
//!
//! Formats (auto-detected, or forced with [`Format`]): Karpathy-style JSON (`dataset_rsicd.json`,
//! `dataset_ucm.json`, `dataset_sydney*.json`), the seed project's RISCM `captions.csv`, COCO captions JSON, and
//! the Hugging Face parquet export of RSICD. See `docs/data.md` for the exact fields each reader uses.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::formats;
use crate::{DataError, Split};

/// The on-disk annotation formats understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `{"images": [{"filename", "split", "sentences": [{"raw"}], "class"?}]}`; `raw` is used, never `tokens`.
    Karpathy,
    /// `captions.csv` with `source,split,image,caption_1..caption_5` (the seed project's RISCM layout).
    RiscmCsv,
    /// COCO captions: `{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}`.
    Coco,
    /// Hugging Face parquet export: columns `filename`, `captions` (list of strings), `image` {bytes, path}.
    HfParquet,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Karpathy => "karpathy",
            Format::RiscmCsv => "riscm-csv",
            Format::Coco => "coco",
            Format::HfParquet => "hf-parquet",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "karpathy" | "karpathy-json" => Ok(Format::Karpathy),
            "riscm" | "riscm-csv" | "csv" => Ok(Format::RiscmCsv),
            "coco" | "coco-json" => Ok(Format::Coco),
            "parquet" | "hf-parquet" | "hf" => Ok(Format::HfParquet),
            other => Err(DataError::Invalid(format!(
                "unknown dataset format {other:?}: expected karpathy, riscm-csv, coco or hf-parquet"
            ))),
        }
    }
}

/// One image and all its reference captions.
#[derive(Debug, Clone)]
pub struct Item {
    /// Position in [`Dataset::items`]; stable for a given annotation file.
    pub id: usize,
    pub filename: String,
    pub split: Split,
    /// Reference captions exactly as annotated (`raw`), duplicates kept: metrics need them all.
    pub captions: Vec<String>,
    /// Scene class when the annotation has one (RSICD `class`; UCM/Sydney have none in their JSON).
    pub class: Option<String>,
    /// Source dataset when the annotation says (RISCM `source` column: NWPU, RSICD, UCM).
    pub source: Option<String>,
    /// Where the image file should be, when an image folder is known; it may still be missing on disk.
    pub image_path: Option<PathBuf>,
    /// Encoded image bytes embedded in the annotation file (parquet export).
    pub image_bytes: Option<Arc<[u8]>>,
    /// Where the item sits in its annotation file, for messages: `images[12]`, `line 14`, `x.parquet row 3`.
    pub origin: String,
}

impl Item {
    /// Decodes this item's image, from embedded bytes or from its file.
    pub fn decode_image(&self) -> Result<image::DynamicImage, DataError> {
        if let Some(bytes) = &self.image_bytes {
            return crate::decode::decode_bytes(bytes).map_err(|message| DataError::Decode {
                path: PathBuf::from(format!("{} ({})", self.filename, self.origin)),
                message,
            });
        }
        match &self.image_path {
            Some(path) => crate::decode::decode_file(path),
            None => Err(DataError::Invalid(format!(
                "{}: no image available (the dataset was loaded without an image folder)",
                self.filename
            ))),
        }
    }

    /// Fast check of this item's image without decoding pixels (see [`crate::decode::probe_file`]): present,
    /// recognised, dimensions readable and within the pixel limit, data complete. Returns `(width, height)`.
    pub fn probe_image(&self) -> Result<(u32, u32), DataError> {
        if let Some(bytes) = &self.image_bytes {
            return crate::decode::probe_bytes(bytes).map_err(|message| DataError::Decode {
                path: PathBuf::from(format!("{} ({})", self.filename, self.origin)),
                message,
            });
        }
        match &self.image_path {
            Some(path) => crate::decode::probe_file(path),
            None => Err(DataError::Invalid(format!(
                "{}: no image available (the dataset was loaded without an image folder)",
                self.filename
            ))),
        }
    }

    /// True when pixels can be had: embedded bytes, or a file that exists.
    pub fn has_image(&self) -> bool {
        self.image_bytes.is_some() || self.image_path.as_ref().is_some_and(|p| p.is_file())
    }
}

/// How to load a dataset.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Force a format instead of detecting it.
    pub format: Option<Format>,
    /// The image folder; when absent it is searched next to the annotation file.
    pub image_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub format: Format,
    /// The annotation file(s) read (several for a parquet export split in files).
    pub annotation_files: Vec<PathBuf>,
    /// The image folder in use, if any.
    pub image_dir: Option<PathBuf>,
    pub items: Vec<Item>,
    /// Things the user should know that are not errors, e.g. "no image folder found: text-only".
    pub notes: Vec<String>,
}

/// Image counts and caption counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub images: usize,
    pub captions: usize,
}

impl Dataset {
    /// Loads `path` (an annotation file, or a folder holding one), detecting the format unless given.
    pub fn load(path: &Path, format: Option<Format>) -> Result<Dataset, DataError> {
        Dataset::load_with(path, &LoadOptions { format, image_dir: None })
    }

    pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
        let (files, format) = locate(path, opts.format)?;
        let mut items = Vec::new();
        for file in &files {
            let mut part = match format {
                Format::Karpathy => formats::karpathy::read(file)?,
                Format::RiscmCsv => formats::riscm_csv::read(file)?,
                Format::Coco => formats::coco::read(file)?,
                Format::HfParquet => formats::hf_parquet::read(file)?,
            };
            items.append(&mut part);
        }
        for (i, item) in items.iter_mut().enumerate() {
            item.id = i;
        }
        let mut ds =
            Dataset { format, annotation_files: files, image_dir: None, items, notes: Vec::new() };
        ds.attach_images(opts.image_dir.as_deref())?;
        Ok(ds)
    }

    /// Resolves image paths against `dir`, or against the best folder found next to the annotation file.
    fn attach_images(&mut self, dir: Option<&Path>) -> Result<(), DataError> {
        let embedded = self.items.iter().filter(|i| i.image_bytes.is_some()).count();
        if embedded == self.items.len() && dir.is_none() {
            return Ok(());
        }
        let Some(relative_to) =
            self.annotation_files.first().and_then(|f| f.parent()).map(Path::to_path_buf)
        else {
            return Ok(());
        };
        let chosen = match dir {
            Some(d) => {
                if !d.is_dir() {
                    return Err(DataError::Invalid(format!(
                        "image folder {} does not exist",
                        d.display()
                    )));
                }
                Some(d.to_path_buf())
            }
            None => {
                let candidates: Vec<PathBuf> =
                    ["images", "resized", "imgs", "RSICD_images", "../images", "."]
                        .iter()
                        .map(|c| relative_to.join(c))
                        .filter(|c| c.is_dir())
                        .collect();
                let hits: Vec<usize> = candidates
                    .iter()
                    .map(|c| {
                        self.items.par_iter().filter(|i| c.join(&i.filename).is_file()).count()
                    })
                    .collect();
                hits.iter().enumerate().filter(|(_, &h)| h > 0).max_by_key(|(_, &h)| h).map(
                    |(i, _)| {
                        // Keep messages short: `RSICD/annotations/../images` -> `RSICD/images` when it exists.
                        let c = &candidates[i];
                        c.canonicalize().unwrap_or_else(|_| c.clone())
                    },
                )
            }
        };
        match &chosen {
            Some(d) => {
                for item in &mut self.items {
                    if item.image_bytes.is_none() {
                        item.image_path = Some(d.join(&item.filename));
                    }
                }
                let found = self.items.par_iter().filter(|i| i.has_image()).count();
                if found < self.items.len() {
                    self.notes.push(format!(
                        "{} of {} images found in {} ({} missing)",
                        found,
                        self.items.len(),
                        d.display(),
                        self.items.len() - found
                    ));
                }
            }
            None => self.notes.push(format!(
                "no image folder found next to {} (tried images/, resized/, imgs/, ../images/): loaded for \
                 text-only work (EDA, metrics); pass --images <dir> to use pixels",
                relative_to.display()
            )),
        }
        self.image_dir = chosen;
        Ok(())
    }

    pub fn split(&self, split: &Split) -> impl Iterator<Item = &Item> + '_ {
        let split = split.clone();
        self.items.iter().filter(move |i| i.split == split)
    }

    /// A copy holding only `split` (ids renumbered from 0).
    pub fn filter_split(&self, split: &Split) -> Dataset {
        let mut out = Dataset {
            items: self.split(split).cloned().collect(),
            notes: vec![],
            ..self.clone_meta()
        };
        for (i, item) in out.items.iter_mut().enumerate() {
            item.id = i;
        }
        out
    }

    fn clone_meta(&self) -> Dataset {
        Dataset {
            format: self.format,
            annotation_files: self.annotation_files.clone(),
            image_dir: self.image_dir.clone(),
            items: Vec::new(),
            notes: self.notes.clone(),
        }
    }

    /// Images and captions per split, in a stable order.
    pub fn counts_by_split(&self) -> BTreeMap<String, Counts> {
        let mut out: BTreeMap<String, Counts> = BTreeMap::new();
        for item in &self.items {
            let c = out.entry(item.split.to_string()).or_default();
            c.images += 1;
            c.captions += item.captions.len();
        }
        out
    }

    pub fn caption_count(&self) -> usize {
        self.items.iter().map(|i| i.captions.len()).sum()
    }

    /// Number of items whose pixels are available (embedded, or the file exists).
    pub fn images_available(&self) -> usize {
        self.items.par_iter().filter(|i| i.has_image()).count()
    }
}

/// Checks the images of every item in `splits` (all items when `splits` is empty) with
/// [`Item::probe_image`], in parallel: missing, empty, unrecognised, oversized and truncated images, without
/// decoding pixels (thousands of images per second per core). Returns one error per bad item, in item order;
/// each names the file (or the parquet row) and what is wrong.
pub fn probe_split_images(ds: &Dataset, splits: &[Split]) -> Vec<DataError> {
    let items: Vec<&Item> =
        ds.items.iter().filter(|i| splits.is_empty() || splits.contains(&i.split)).collect();
    let mut errors: Vec<(usize, DataError)> = items
        .par_iter()
        .filter_map(|item| item.probe_image().err().map(|e| (item.id, e)))
        .collect();
    errors.sort_by_key(|(id, _)| *id);
    errors.into_iter().map(|(_, e)| e).collect()
}

/// Finds the annotation file(s) under `path` and the format.
fn locate(path: &Path, forced: Option<Format>) -> Result<(Vec<PathBuf>, Format), DataError> {
    if !path.exists() {
        return Err(DataError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ));
    }
    if path.is_file() {
        let format = match forced {
            Some(f) => f,
            None => detect(path)?,
        };
        return Ok((vec![path.to_path_buf()], format));
    }
    // A folder: parquet shards (possibly under data/), captions.csv, or one annotation JSON.
    let mut parquet: Vec<PathBuf> = Vec::new();
    for dir in [path.to_path_buf(), path.join("data")] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            parquet.extend(
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "parquet")),
            );
        }
    }
    parquet.sort();
    if !parquet.is_empty() && forced.is_none_or(|f| f == Format::HfParquet) {
        return Ok((parquet, Format::HfParquet));
    }
    let csv = path.join("captions.csv");
    if csv.is_file() && forced.is_none_or(|f| f == Format::RiscmCsv) {
        return Ok((vec![csv], Format::RiscmCsv));
    }
    let mut jsons: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| DataError::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    jsons.sort();
    // Prefer the full annotation (`dataset_*.json`) over samples.
    jsons.sort_by_key(|p| {
        !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("dataset"))
    });
    if let Some(first) = jsons.first() {
        let format = match forced {
            Some(f) => f,
            None => detect(first)?,
        };
        return Ok((vec![first.clone()], format));
    }
    Err(DataError::format(
        path,
        "no annotation file found in this folder: expected *.parquet (also under data/), captions.csv or a \
         Karpathy/COCO *.json",
    ))
}

/// Detects the format of one file from its extension and, for JSON, its top-level keys.
pub fn detect(path: &Path) -> Result<Format, DataError> {
    let ext =
        path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "csv" => Ok(Format::RiscmCsv),
        "parquet" => Ok(Format::HfParquet),
        "json" => {
            let value = formats::read_json(path)?;
            let has = |k: &str| value.get(k).is_some();
            if has("annotations") {
                Ok(Format::Coco)
            } else if has("images") {
                Ok(Format::Karpathy)
            } else {
                Err(DataError::format(
                    path,
                    "JSON is neither Karpathy (top-level \"images\" with \"sentences\") nor COCO (top-level \
                     \"images\" and \"annotations\")",
                ))
            }
        }
        other => Err(DataError::format(
            path,
            format!("cannot tell the format from the extension {other:?}: expected .json, .csv or .parquet, or pass --format"),
        )),
    }
}

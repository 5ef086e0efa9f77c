//! Inputs of `cargo xtask score`: references (COCO annotations JSON or Karpathy-style JSON) and
//! predictions (COCO results JSON or JSONL), matched by image id.
//!
//! References are read here rather than through the `rsicd-data` crate so that scoring does not pull in
//! image decoding and parquet; `load_references` is the one place to switch to `rsicd_data::Dataset`
//! (its `Item { filename, split, captions }` maps one to one onto [`References::images`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// Reference captions of the images to score, in file order.
pub struct References {
    pub path: PathBuf,
    pub format: &'static str,
    /// The split selected with `--split`, when the file has splits.
    pub split: Option<String>,
    /// (image id, reference captions).
    pub images: Vec<(String, Vec<String>)>,
    /// Ids are COCO integers (printed back as numbers in JSON).
    pub numeric_ids: bool,
    /// Other names an image may be given in predictions (COCO `file_name` → id).
    pub aliases: HashMap<String, String>,
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// The id of a JSON value that names an image: a string, or an integer (kept as its decimal string).
fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Loads references from a COCO annotations file (ids are the COCO image ids) or a Karpathy-style file
/// (`images[].filename/split/sentences[].raw`; ids are the filenames, `split` picks the split).
pub fn load_references(path: &Path, split: Option<&str>) -> Result<References> {
    let v = read_json(path)?;
    if v.get("annotations").is_some_and(Value::is_array) {
        if let Some(s) = split {
            bail!(
                "{} is a COCO annotations file, which holds a single split; --split {s} does not apply (drop it)",
                path.display()
            );
        }
        return coco_references(path, &v);
    }
    let is_karpathy = v
        .get("images")
        .and_then(Value::as_array)
        .is_some_and(|a| a.first().is_none_or(|im| im.get("sentences").is_some()));
    if is_karpathy {
        return karpathy_references(path, &v, split);
    }
    bail!(
        "{}: unrecognised references format; expected COCO annotations JSON (\"images\" + \"annotations\" with \
         \"image_id\"/\"caption\") or Karpathy-style JSON (\"images\" with \"filename\", \"split\", \
         \"sentences\"[].\"raw\")",
        path.display()
    )
}

fn coco_references(path: &Path, v: &Value) -> Result<References> {
    let p = path.display();
    let mut order: Vec<String> = Vec::new();
    let mut aliases = HashMap::new();
    if let Some(images) = v.get("images").and_then(Value::as_array) {
        for (i, im) in images.iter().enumerate() {
            let id = im
                .get("id")
                .and_then(id_string)
                .ok_or_else(|| anyhow!("{p}: images[{i}] has no integer or string \"id\""))?;
            if let Some(name) = im.get("file_name").and_then(Value::as_str) {
                aliases.insert(name.to_string(), id.clone());
            }
            order.push(id);
        }
    }
    let mut caps: HashMap<String, Vec<String>> = HashMap::new();
    for (i, a) in v["annotations"].as_array().unwrap().iter().enumerate() {
        let id = a.get("image_id").and_then(id_string).ok_or_else(|| {
            anyhow!("{p}: annotations[{i}] has no integer or string \"image_id\"")
        })?;
        let c = a.get("caption").and_then(Value::as_str).ok_or_else(|| {
            anyhow!("{p}: annotations[{i}] (image {id}) has no string \"caption\"")
        })?;
        if !caps.contains_key(&id) && !order.contains(&id) {
            // Annotations of images the "images" list does not declare still count, after the listed ones.
            order.push(id.clone());
        }
        caps.entry(id).or_default().push(c.to_string());
    }
    let uncaptioned: Vec<&String> = order.iter().filter(|id| !caps.contains_key(*id)).collect();
    if !uncaptioned.is_empty() {
        bail!(
            "{p}: {} image(s) have no caption annotation (first: {}); every evaluated image needs references",
            uncaptioned.len(),
            uncaptioned[0]
        );
    }
    let numeric_ids = order.iter().all(|id| id.parse::<i64>().is_ok());
    let images = order.into_iter().map(|id| {
        let c = caps.remove(&id).unwrap_or_default();
        (id, c)
    });
    Ok(References {
        path: path.to_path_buf(),
        format: "COCO annotations",
        split: None,
        images: images.collect(),
        numeric_ids,
        aliases,
    })
}

fn karpathy_references(path: &Path, v: &Value, split: Option<&str>) -> Result<References> {
    let p = path.display();
    let mut by_split: BTreeMap<String, usize> = BTreeMap::new();
    let mut all = Vec::new();
    for (i, im) in v["images"].as_array().unwrap().iter().enumerate() {
        let name = im
            .get("filename")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{p}: images[{i}] has no string \"filename\""))?;
        let s = im.get("split").and_then(Value::as_str).unwrap_or("").to_string();
        let sentences = im
            .get("sentences")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("{p}: images[{i}] ({name}) has no \"sentences\" list"))?;
        let mut caps = Vec::with_capacity(sentences.len());
        for (j, sent) in sentences.iter().enumerate() {
            let raw = match (
                sent.get("raw").and_then(Value::as_str),
                sent.get("tokens").and_then(Value::as_array),
            ) {
                (Some(r), _) => r.to_string(),
                (None, Some(t)) => t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "),
                _ => bail!(
                    "{p}: images[{i}].sentences[{j}] ({name}) has neither \"raw\" nor \"tokens\""
                ),
            };
            caps.push(raw);
        }
        *by_split.entry(s.clone()).or_default() += 1;
        all.push((s, name.to_string(), caps));
    }
    let chosen = match split {
        Some(s) => {
            if !by_split.contains_key(s) {
                bail!(
                    "{p}: no image has split {s:?}; splits in the file: {}",
                    describe_splits(&by_split)
                );
            }
            Some(s.to_string())
        }
        None if by_split.len() == 1 => by_split.keys().next().filter(|s| !s.is_empty()).cloned(),
        None => bail!(
            "{p} holds several splits ({}); choose one with --split",
            describe_splits(&by_split)
        ),
    };
    let images: Vec<(String, Vec<String>)> = all
        .into_iter()
        .filter(|(s, _, _)| chosen.as_ref().is_none_or(|c| c == s))
        .map(|(_, name, caps)| (name, caps))
        .collect();
    let mut seen = HashMap::new();
    for (i, (name, caps)) in images.iter().enumerate() {
        if let Some(j) = seen.insert(name.as_str(), i) {
            bail!("{p}: filename {name:?} appears twice (images {j} and {i} of the split); ids must be unique");
        }
        if caps.is_empty() {
            bail!("{p}: image {name:?} has no reference sentence");
        }
    }
    Ok(References {
        path: path.to_path_buf(),
        format: "Karpathy JSON",
        split: chosen,
        images,
        numeric_ids: false,
        aliases: HashMap::new(),
    })
}

fn describe_splits(by_split: &BTreeMap<String, usize>) -> String {
    by_split
        .iter()
        .map(|(s, n)| format!("{} ({n} images)", if s.is_empty() { "<none>" } else { s }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One caption per image, in file order.
pub struct Predictions {
    pub path: PathBuf,
    pub format: &'static str,
    pub captions: Vec<(String, String)>,
}

/// Loads predictions: a COCO results JSON array `[{"image_id", "caption"}]` or JSON Lines with the same
/// keys (`"filename"` is accepted for `"image_id"`). An image may appear once.
pub fn load_predictions(path: &Path) -> Result<Predictions> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let p = path.display();
    let trimmed = text.trim_start();
    let (format, records): (&'static str, Vec<(String, Value)>) = if trimmed.starts_with('[') {
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("{p} is not valid JSON"))?;
        let arr = v.as_array().unwrap();
        (
            "COCO results JSON",
            arr.iter()
                .enumerate()
                .map(|(i, r)| (format!("{p}: element [{i}]"), r.clone()))
                .collect(),
        )
    } else {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("{p}:{}: not a JSON object (expected JSON Lines of {{\"image_id\", \"caption\"}})", n + 1))?;
            out.push((format!("{p}:{}", n + 1), v));
        }
        ("JSON Lines", out)
    };
    let mut captions = Vec::with_capacity(records.len());
    let mut seen: HashMap<String, String> = HashMap::new();
    for (at, r) in records {
        let id = r.get("image_id").or_else(|| r.get("filename")).and_then(id_string).ok_or_else(
            || anyhow!("{at}: expected an object with an integer or string \"image_id\""),
        )?;
        let caption = r
            .get("caption")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{at}: image {id:?} has no string \"caption\""))?;
        if let Some(first) = seen.insert(id.clone(), at.clone()) {
            bail!("{at}: image {id:?} already has a prediction ({first}); pycocoevalcap scores one caption per image");
        }
        captions.push((id, caption.to_string()));
    }
    if captions.is_empty() {
        bail!("{p} holds no predictions");
    }
    Ok(Predictions { path: path.to_path_buf(), format, captions })
}

/// Predictions matched to references, in reference order.
pub struct Matched {
    pub images: Vec<(String, Vec<String>, String)>,
    /// Reference images without a prediction that were left out (`--allow-missing`).
    pub dropped: usize,
    /// Prediction ids that were found under another name (COCO file name, or path basename).
    pub renamed: usize,
}

/// Pairs each reference image with its prediction. Predictions for unknown images are an error; reference
/// images without a prediction are an error unless `allow_missing`.
pub fn match_ids(refs: &References, preds: &Predictions, allow_missing: bool) -> Result<Matched> {
    let index: HashMap<&str, usize> =
        refs.images.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
    let mut hyp: Vec<Option<String>> = vec![None; refs.images.len()];
    let mut unknown = Vec::new();
    let mut renamed = 0;
    for (id, caption) in &preds.captions {
        let found = index.get(id.as_str()).copied().or_else(|| {
            let alias = refs
                .aliases
                .get(id)
                .map(String::as_str)
                .or_else(|| id.rsplit('/').next().filter(|b| *b != id));
            alias.and_then(|a| index.get(a).copied()).inspect(|_| renamed += 1)
        });
        match found {
            Some(i) if hyp[i].is_some() => {
                bail!(
                    "{}: two predictions name reference image {:?}",
                    preds.path.display(),
                    refs.images[i].0
                )
            }
            Some(i) => hyp[i] = Some(caption.clone()),
            None => unknown.push(id.clone()),
        }
    }
    if !unknown.is_empty() {
        let examples: Vec<&str> = refs.images.iter().take(3).map(|(id, _)| id.as_str()).collect();
        bail!(
            "{} prediction(s) name images that are not in the references {} (first: {:?}); reference ids look \
             like {:?}{}",
            unknown.len(),
            refs.path.display(),
            unknown[0],
            examples,
            if refs.split.is_some() { " (is --split right?)" } else { "" }
        );
    }
    let missing: Vec<&str> = refs
        .images
        .iter()
        .zip(&hyp)
        .filter(|(_, h)| h.is_none())
        .map(|((id, _), _)| id.as_str())
        .collect();
    if !missing.is_empty() && !allow_missing {
        bail!(
            "{} of {} reference images have no prediction (first: {:?}); pycocoevalcap scores every reference image. \
             Pass --allow-missing to score only the predicted images (corpus scores, CIDEr's document frequencies \
             included, then cover that subset only)",
            missing.len(),
            refs.images.len(),
            missing[0]
        );
    }
    let dropped = missing.len();
    let images = refs
        .images
        .iter()
        .zip(hyp)
        .filter_map(|((id, r), h)| h.map(|h| (id.clone(), r.clone(), h)))
        .collect();
    Ok(Matched { images, dropped, renamed })
}

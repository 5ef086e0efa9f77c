//! A memory-mapped safetensors checkpoint: one file, or the shards listed by `model.safetensors.index.json`.
//!
//! Headers are parsed up front (so a truncated or damaged file fails at open, naming the file); tensor bytes are
//! only touched when a tensor is read, one at a time, so loading needs the model's memory plus one tensor.
use crate::{Result, WeightsError};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Dtype and shape of one stored tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<i64>,
}

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    metadata: Metadata,
}

pub struct Checkpoint {
    shards: Vec<Shard>,
    /// key -> shard index; sorted so errors and iteration are deterministic.
    keys: BTreeMap<String, usize>,
    /// What the user pointed at (file or directory), for messages.
    origin: PathBuf,
}

impl Checkpoint {
    /// Opens `path`: a `.safetensors` file, a `model.safetensors.index.json`, or a directory holding either
    /// `model.safetensors.index.json` (sharded) or `model.safetensors`.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |error| WeightsError::Io { path: path.to_path_buf(), error };
        let meta = std::fs::metadata(path).map_err(io)?;
        let files = if meta.is_dir() {
            let index = path.join("model.safetensors.index.json");
            let single = path.join("model.safetensors");
            if index.is_file() {
                shards_from_index(&index)?
            } else if single.is_file() {
                vec![single]
            } else {
                return Err(WeightsError::NoWeights { path: path.to_path_buf() });
            }
        } else if path.extension().is_some_and(|e| e == "json") {
            shards_from_index(path)?
        } else {
            vec![path.to_path_buf()]
        };
        Self::from_files(path, &files)
    }

    /// Opens an explicit list of safetensors files as one checkpoint (keys must be unique across them).
    pub fn from_files(origin: &Path, files: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::with_capacity(files.len());
        let mut keys = BTreeMap::new();
        for (i, file) in files.iter().enumerate() {
            let io = |error| WeightsError::Io { path: file.clone(), error };
            let handle = std::fs::File::open(file).map_err(io)?;
            // SAFETY: the map is read-only; like every mmap-based loader (candle, safetensors' own docs) we rely on
            // nobody truncating the checkpoint while it is being read.
            let mmap = unsafe { Mmap::map(&handle) }.map_err(io)?;
            let (header, metadata) = SafeTensors::read_metadata(&mmap)
                .map_err(|e| WeightsError::Format { path: file.clone(), msg: e.to_string() })?;
            for name in metadata.tensors().keys() {
                if let Some(prev) = keys.insert(name.clone(), i) {
                    return Err(WeightsError::Index {
                        path: file.clone(),
                        msg: format!("key `{name}` is also stored in {}", files[prev].display()),
                    });
                }
            }
            shards.push(Shard { path: file.clone(), mmap, data_start: 8 + header, metadata });
        }
        Ok(Self { shards, keys, origin: origin.to_path_buf() })
    }

    /// A cheap identity of the weights for checkpoint/resume checks: sha256 over every file's header, length, and
    /// first and last MiB of tensor data (hashing all of a 6 GB checkpoint at every resume would take minutes).
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for s in &self.shards {
            let data = &s.mmap[s.data_start..];
            h.update(&s.mmap[..s.data_start]);
            h.update((s.mmap.len() as u64).to_le_bytes());
            let n = data.len().min(1 << 20);
            h.update(&data[..n]);
            h.update(&data[data.len() - n..]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// All stored keys, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.keys.contains_key(name)
    }

    /// The file a key lives in.
    pub fn file_of(&self, name: &str) -> &Path {
        self.keys.get(name).map_or(&self.origin, |&i| &self.shards[i].path)
    }

    pub fn info(&self, name: &str) -> Option<TensorInfo> {
        let shard = &self.shards[*self.keys.get(name)?];
        let info = shard.metadata.info(name)?;
        Some(TensorInfo {
            dtype: info.dtype,
            shape: info.shape.iter().map(|&d| d as i64).collect(),
        })
    }

    /// The single floating-point dtype the checkpoint is stored in (error if it mixes several).
    pub fn float_kind(&self) -> Result<Kind> {
        let mut seen = std::collections::BTreeSet::new();
        for name in self.names() {
            if let Some(kind) = self.info(name).and_then(|i| float_kind(i.dtype)) {
                seen.insert(format!("{kind:?}"));
            }
        }
        match seen.len() {
            0 => Ok(Kind::Float),
            1 => {
                let name =
                    self.names().find_map(|n| self.info(n).and_then(|i| float_kind(i.dtype)));
                Ok(name.unwrap_or(Kind::Float))
            }
            _ => Err(WeightsError::MixedDTypes {
                path: self.origin.clone(),
                found: seen.into_iter().collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Reads one tensor into a new CPU tensor of its stored dtype. Only floating-point tensors are model weights.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let &i = self.keys.get(name).ok_or_else(|| WeightsError::MissingKey {
            key: name.to_string(),
            path: self.origin.clone(),
            more: 0,
        })?;
        let shard = &self.shards[i];
        let info = shard.metadata.info(name).expect("key listed in this shard");
        let kind = float_kind(info.dtype).ok_or_else(|| WeightsError::DType {
            key: name.to_string(),
            path: shard.path.clone(),
            dtype: format!("{:?}", info.dtype),
        })?;
        let (start, end) = info.data_offsets;
        let bytes = &shard.mmap[shard.data_start + start..shard.data_start + end];
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        Ok(Tensor::f_from_data_size(bytes, &shape, kind)?)
    }
}

pub(crate) fn float_kind(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::F16 => Some(Kind::Half),
        _ => None,
    }
}

fn shards_from_index(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index)
        .map_err(|error| WeightsError::Io { path: index.to_path_buf(), error })?;
    let bad = |msg: String| WeightsError::Index { path: index.to_path_buf(), msg };
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("expected an object `weight_map` of key -> shard file".into()))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = Vec::new();
    let mut seen = HashMap::new();
    for (key, file) in map {
        let file =
            file.as_str().ok_or_else(|| bad(format!("`weight_map.{key}` is not a file name")))?;
        if seen.insert(file.to_string(), ()).is_none() {
            files.push(dir.join(file));
        }
    }
    if files.is_empty() {
        return Err(bad("`weight_map` is empty".into()));
    }
    Ok(files)
}

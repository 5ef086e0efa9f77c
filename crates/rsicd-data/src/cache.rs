//! On-disk cache of preprocessed images, so epochs after the first skip decoding and resizing.
//!
//! One pack per preprocessing setting, `<dir>/pixels-<size>-<resample>-v1.{bin,idx}`:
//! * `.bin` holds fixed-size records, memory-mapped for reading. Bicubic records are the resized 8-bit RGB image
//!   (3·size² bytes, four times smaller than `f32` and lossless, because the bicubic path rounds to 8 bits exactly
//!   where Pillow does); bilinear records are the normalized values as `f16` (error below 0.001, i.e. 0.06 of an
//!   8-bit level).
//! * `.idx` is an append-only log of `(sha256 of the image file's bytes, record number)`. Records are written
//!   before their index entry, and on open any entry pointing past the end of `.bin` (a crash mid-append) is
//!   ignored, so the cache is always consistent without rewriting anything.
//!
//! The key is the file's content (plus the settings, through the pack name), so a re-exported or edited image
//! is never served stale, and identical files share one record. One writer at a time (the training process).
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use half::f16;
use memmap2::Mmap;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::decode::{decode_bytes, into_rgb8};
use crate::{DataError, ImagePreprocessor, Item, Resample};

type Key = [u8; 32];

pub struct PixelCache {
    pre: ImagePreprocessor,
    bin_path: PathBuf,
    idx_path: PathBuf,
    bin: File,
    idx: File,
    map: Option<Mmap>,
    index: HashMap<Key, u64>,
    records: u64,
    record_len: usize,
    pub hits: u64,
    pub misses: u64,
}

impl PixelCache {
    pub fn open(dir: &Path, pre: ImagePreprocessor) -> Result<Self, DataError> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let stem = format!("pixels-{}-{}-v1", pre.size, pre.resample.name());
        let bin_path = dir.join(format!("{stem}.bin"));
        let idx_path = dir.join(format!("{stem}.idx"));
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(p)
                .map_err(|e| DataError::io(p, e))
        };
        let bin = open(&bin_path)?;
        let mut idx = open(&idx_path)?;
        let record_len = match pre.resample {
            Resample::Bicubic => pre.len(),
            Resample::BilinearAntialias => pre.len() * 2,
        };
        let bin_len = bin.metadata().map_err(|e| DataError::io(&bin_path, e))?.len();
        let records = bin_len / record_len as u64;
        let mut raw = Vec::new();
        idx.read_to_end(&mut raw).map_err(|e| DataError::io(&idx_path, e))?;
        let torn = raw.len() % 40;
        if torn != 0 {
            // A crash mid-entry: drop the fragment so later appends stay aligned.
            idx.set_len((raw.len() - torn) as u64).map_err(|e| DataError::io(&idx_path, e))?;
        }
        let mut index = HashMap::new();
        for entry in raw.chunks_exact(40) {
            let key: Key = entry[..32].try_into().expect("32 bytes");
            let slot = u64::from_le_bytes(entry[32..].try_into().expect("8 bytes"));
            if slot < records {
                index.insert(key, slot);
            }
        }
        let mut cache = PixelCache {
            pre,
            bin_path,
            idx_path,
            bin,
            idx,
            map: None,
            index,
            records,
            record_len,
            hits: 0,
            misses: 0,
        };
        cache.remap()?;
        Ok(cache)
    }

    fn remap(&mut self) -> Result<(), DataError> {
        self.map = if self.records == 0 {
            None
        } else {
            // SAFETY: the pack is only appended to (by this process, the single writer); mapped bytes never change.
            Some(unsafe { Mmap::map(&self.bin) }.map_err(|e| DataError::io(&self.bin_path, e))?)
        };
        Ok(())
    }

    /// Number of cached images.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn record(&self, slot: u64) -> &[u8] {
        let start = slot as usize * self.record_len;
        &self.map.as_ref().expect("mapped")[start..start + self.record_len]
    }

    fn decode_record(&self, rec: &[u8], out: &mut [f32]) {
        match self.pre.resample {
            Resample::Bicubic => {
                let lut: [f32; 256] = std::array::from_fn(|v| v as f32 / 127.5 - 1.0);
                let plane = out.len() / 3;
                for (i, px) in rec.chunks_exact(3).enumerate() {
                    out[i] = lut[usize::from(px[0])];
                    out[plane + i] = lut[usize::from(px[1])];
                    out[2 * plane + i] = lut[usize::from(px[2])];
                }
            }
            Resample::BilinearAntialias => {
                for (o, b) in out.iter_mut().zip(rec.chunks_exact(2)) {
                    *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        }
    }

    fn encode_record(&self, bytes: &[u8], origin: &str) -> Result<Vec<u8>, DataError> {
        let img = decode_bytes(bytes)
            .map_err(|message| DataError::Decode { path: origin.into(), message })?;
        let rgb = into_rgb8(img);
        Ok(match self.pre.resample {
            Resample::Bicubic => self.pre.resize_u8(&rgb).into_raw(),
            Resample::BilinearAntialias => {
                let mut f = vec![0f32; self.pre.len()];
                self.pre.apply_rgb_into(&rgb, &mut f);
                f.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect()
            }
        })
    }

    /// Preprocessed pixels of `items` as one `[n, 3, size, size]` buffer, decoding (in parallel) only what the
    /// cache does not hold yet, and adding those to it.
    pub fn load_batch(&mut self, items: &[&Item]) -> Result<Vec<f32>, DataError> {
        let n = self.pre.len();
        // Read and hash in parallel; the bytes of misses are decoded next.
        let fetched: Vec<(Key, Vec<u8>, String)> = items
            .par_iter()
            .map(|item| {
                let (bytes, origin) = match (&item.image_bytes, &item.image_path) {
                    (Some(b), _) => (b.to_vec(), format!("{} ({})", item.filename, item.origin)),
                    (None, Some(p)) => (
                        std::fs::read(p).map_err(|e| DataError::io(p, e))?,
                        p.display().to_string(),
                    ),
                    (None, None) => {
                        return Err(DataError::Invalid(format!(
                            "{}: no image available",
                            item.filename
                        )));
                    }
                };
                let key: Key = Sha256::digest(&bytes).into();
                Ok((key, bytes, origin))
            })
            .collect::<Result<_, DataError>>()?;
        let missing: Vec<usize> = {
            let mut seen = std::collections::HashSet::new();
            (0..fetched.len())
                .filter(|&i| !self.index.contains_key(&fetched[i].0) && seen.insert(fetched[i].0))
                .collect()
        };
        let encoded: Vec<Vec<u8>> = missing
            .par_iter()
            .map(|&i| self.encode_record(&fetched[i].1, &fetched[i].2))
            .collect::<Result<_, DataError>>()?;
        if !encoded.is_empty() {
            for (&i, rec) in missing.iter().zip(&encoded) {
                self.bin.write_all(rec).map_err(|e| DataError::io(&self.bin_path, e))?;
                self.index.insert(fetched[i].0, self.records);
                self.records += 1;
            }
            self.bin.flush().map_err(|e| DataError::io(&self.bin_path, e))?;
            // Index entries only after their records are in the file.
            let start = self.records - encoded.len() as u64;
            let mut log = Vec::with_capacity(missing.len() * 40);
            for (k, &i) in missing.iter().enumerate() {
                log.extend_from_slice(&fetched[i].0);
                log.extend_from_slice(&(start + k as u64).to_le_bytes());
            }
            self.idx.write_all(&log).map_err(|e| DataError::io(&self.idx_path, e))?;
            self.idx.flush().map_err(|e| DataError::io(&self.idx_path, e))?;
            self.remap()?;
        }
        self.misses += missing.len() as u64;
        self.hits += (items.len() - missing.len()) as u64;
        let mut out = vec![0f32; items.len() * n];
        let slots: Vec<u64> = fetched.iter().map(|f| self.index[&f.0]).collect();
        out.par_chunks_mut(n)
            .zip(slots.par_iter())
            .for_each(|(o, &slot)| self.decode_record(self.record(slot), o));
        Ok(out)
    }
}

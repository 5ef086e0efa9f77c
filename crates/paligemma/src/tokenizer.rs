//! The HF `tokenizer.json` of a PaliGemma checkpoint, checked against the model config at load time: `<image>`
//! must be `image_token_index`, `<bos>`/`<eos>`/`<pad>` must be the configured ids, and no token id may fall outside
//! the embedding table.
use crate::{PaliGemmaConfig, PaliGemmaError, Result};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

pub struct PaliGemmaTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    pub bos_id: i64,
    pub eos_id: i64,
    pub pad_id: i64,
    pub image_id: i64,
    /// The tokenized `"\n"` separator (id 108 in PaliGemma's vocabulary).
    pub sep_ids: Vec<i64>,
}

impl PaliGemmaTokenizer {
    pub fn from_file(path: &Path, cfg: &PaliGemmaConfig) -> Result<Self> {
        Self::from_file_with(path, cfg, true)
    }

    /// `require_image: false` accepts a tokenizer without `<image>` (a plain Gemma tokenizer in a custom
    /// SigLIP + Gemma composition): image slots are found by segment id, so their placeholder id is `image_token_index`
    /// whatever token that is.
    pub fn from_file_with(path: &Path, cfg: &PaliGemmaConfig, require_image: bool) -> Result<Self> {
        let err = |msg: String| PaliGemmaError::Tokenizer { path: path.to_path_buf(), msg };
        let inner = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        let id = |tok: &str| -> Result<i64> {
            inner
                .token_to_id(tok)
                .map(i64::from)
                .ok_or_else(|| err(format!("has no `{tok}` token; is this a PaliGemma tokenizer?")))
        };
        let (bos_id, eos_id, pad_id) = (id("<bos>")?, id("<eos>")?, id("<pad>")?);
        let image_id = if require_image { id("<image>")? } else { cfg.image_token_index };
        for (name, got, want) in [
            ("<image>", image_id, cfg.image_token_index),
            ("<bos>", bos_id, cfg.bos_token_id),
            ("<eos>", eos_id, cfg.eos_token_id),
            ("<pad>", pad_id, cfg.pad_token_id),
        ] {
            if got != want {
                return Err(err(format!(
                    "`{name}` has id {got} but the model config says {want} (tokenizer and checkpoint do not match)"
                )));
            }
        }
        let vocab = inner.get_vocab_size(true) as i64;
        if vocab > cfg.text_config.vocab_size {
            return Err(err(format!(
                "has {vocab} tokens but the model's embedding table has only {} rows",
                cfg.text_config.vocab_size
            )));
        }
        let mut tok = Self {
            inner,
            path: path.to_path_buf(),
            bos_id,
            eos_id,
            pad_id,
            image_id,
            sep_ids: vec![],
        };
        tok.sep_ids = tok.encode("\n")?;
        if tok.sep_ids.is_empty() {
            return Err(err("encodes \"\\n\" to nothing".into()));
        }
        Ok(tok)
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self.inner.encode(text, false).map_err(|e| PaliGemmaError::Tokenizer {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// `(prefix_ids, sep_ids)` for a prompt. The HF processor tokenizes `prefix + "\n"` as one string; when that
    /// equals the two tokenized separately (always, for PaliGemma's vocabulary), the separator is split off so a
    /// soft prompt can sit between them.
    pub fn encode_prompt(&self, prefix: &str) -> Result<(Vec<i64>, Vec<i64>)> {
        let joint = self.encode(&format!("{prefix}\n"))?;
        if joint.ends_with(&self.sep_ids) {
            let n = joint.len() - self.sep_ids.len();
            return Ok((joint[..n].to_vec(), self.sep_ids.clone()));
        }
        Ok((joint, vec![]))
    }

    pub fn decode(&self, ids: &[i64], skip_special: bool) -> Result<String> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.inner
            .decode(&ids, skip_special)
            .map_err(|e| PaliGemmaError::Tokenizer { path: self.path.clone(), msg: e.to_string() })
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

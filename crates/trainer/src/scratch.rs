//! From-scratch models (the demo): a word-level tokenizer built from the training captions with PaliGemma's special
//! tokens, and a small PaliGemma-architecture config. Real fine-tuning starts from converted or hub weights instead.
use crate::config::ScratchConfig;
use crate::TrainError;
use paligemma::PaliGemmaConfig;
use std::collections::BTreeMap;
use std::path::Path;

/// Words are split like tokenizers' `Whitespace` pre-tokenizer (`\w+|[^\w\s]+`) and lowercased.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_is_word = false;
    for ch in text.to_lowercase().chars() {
        if ch.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let is_word = ch.is_alphanumeric() || ch == '_';
        if !cur.is_empty() && is_word != cur_is_word {
            out.push(std::mem::take(&mut cur));
        }
        cur_is_word = is_word;
        cur.push(ch);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Writes a word-level `tokenizer.json`: `<pad>`=0, `<eos>`=1, `<bos>`=2, `<unk>`=3, `"\n"`=4, the words of `texts`
/// (most frequent first, ties alphabetical, so the file is deterministic), and `<image>` last. Returns the vocabulary
/// size (ids `0..n`).
pub fn write_word_tokenizer(texts: &[&str], path: &Path) -> Result<i64, TrainError> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in texts {
        for w in words(t) {
            *counts.entry(w).or_default() += 1;
        }
    }
    let mut by_freq: Vec<(String, usize)> = counts.into_iter().collect();
    by_freq.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let specials = ["<pad>", "<eos>", "<bos>", "<unk>", "\n"];
    let mut vocab = serde_json::Map::new();
    for (i, s) in specials.iter().enumerate() {
        vocab.insert(s.to_string(), i.into());
    }
    for (w, _) in &by_freq {
        let id = vocab.len();
        vocab.entry(w.clone()).or_insert(id.into());
    }
    let image_id = vocab.len();
    vocab.insert("<image>".into(), image_id.into());
    let added = |id: usize, content: &str, special: bool| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                           "normalized": false, "special": special})
    };
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(0, "<pad>", true), added(1, "<eos>", true), added(2, "<bos>", true),
                         added(3, "<unk>", true), added(4, "\n", false), added(image_id, "<image>", true)],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    });
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&json).expect("json"))
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))?;
    Ok(image_id as i64 + 1)
}

/// The PaliGemma config of a scratch model with vocabulary `vocab` (whose last id is `<image>`): PaliGemma 1, or
/// PaliGemma 2 when `text_model_type` is `"gemma2"` (validated with the config).
pub fn paligemma_config(s: &ScratchConfig, vocab: i64) -> PaliGemmaConfig {
    let mut cfg = PaliGemmaConfig::tiny(vocab, vocab - 1);
    let v = &mut cfg.vision_config;
    v.image_size = s.image_size;
    v.patch_size = s.patch_size;
    v.hidden_size = s.vision_hidden;
    v.num_hidden_layers = s.vision_layers;
    v.num_attention_heads = s.vision_heads;
    v.intermediate_size = s.vision_mlp;
    v.projection_dim = Some(s.text_hidden);
    let t = &mut cfg.text_config;
    t.vocab_size = vocab;
    t.hidden_size = s.text_hidden;
    t.num_hidden_layers = s.text_layers;
    t.num_attention_heads = s.heads;
    t.num_key_value_heads = s.kv_heads;
    t.head_dim = s.head_dim;
    t.intermediate_size = s.text_mlp;
    cfg.projection_dim = s.text_hidden;
    cfg.hidden_size = s.text_hidden;
    if s.text_model_type.as_deref() == Some("gemma2") {
        cfg.text_config = cfg.text_config.into_gemma2(s.sliding_window.unwrap_or(4096));
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gemma2_scratch_model_is_a_valid_paligemma2() {
        let toml = "name = \"s\"\nstrategy = \"hard_prompt\"\n[model]\nsource = \"scratch\"\n[model.scratch]\n\
            image_size = 32\npatch_size = 8\nvision_hidden = 16\nvision_layers = 1\nvision_heads = 2\nvision_mlp = 32\n\
            text_hidden = 32\ntext_layers = 3\nheads = 4\nhead_dim = 8\ntext_mlp = 64\ntext_model_type = \"gemma2\"\n\
            sliding_window = 16\n[data]\npath = \"d.json\"\n[train]\npreset = \"all\"\n";
        let cfg = crate::ExperimentConfig::from_toml(toml, &[]).unwrap();
        let s = cfg.model.scratch.as_ref().unwrap();
        let p = paligemma_config(s, 50);
        p.validate().unwrap();
        let t = &p.text_config;
        assert_eq!(t.architecture(), gemma::Architecture::Gemma2);
        assert_eq!((t.query_pre_attn_scalar, t.sliding_window), (Some(8.0), Some(16)));
        assert_eq!((t.attn_logit_softcapping, t.final_logit_softcapping), (Some(50.0), Some(30.0)));
        assert_eq!(
            (0..3).map(|i| t.layer_window(i)).collect::<Vec<_>>(),
            [Some(16), None, Some(16)]
        );
        let mut g1 = s.clone();
        g1.text_model_type = None;
        g1.sliding_window = None;
        assert_eq!(
            paligemma_config(&g1, 50).text_config.architecture(),
            gemma::Architecture::Gemma1
        );
    }

    #[test]
    fn word_tokenizer_round_trips_and_has_paligemma_specials() {
        let dir = std::env::temp_dir().join(format!("pg-wordtok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokenizer.json");
        struct Remove<'a>(&'a std::path::Path);
        impl Drop for Remove<'_> {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(self.0);
            }
        }
        let _remove = Remove(&dir);
        let n = write_word_tokenizer(&["Two red planes, near a river.", "a river"], &path).unwrap();
        let tok = tokenizers::Tokenizer::from_file(&path).unwrap();
        assert_eq!(tok.token_to_id("<image>"), Some(n as u32 - 1));
        assert_eq!(tok.token_to_id("a"), Some(5), "most frequent word first");
        let enc = tok.encode("caption en\n", false).unwrap();
        assert_eq!(*enc.get_ids().last().unwrap(), 4, "\\n is one token");
        let ids = tok.encode("two red planes , near a river .", false).unwrap();
        assert!(!ids.get_ids().contains(&3), "no <unk> for known words");
        assert_eq!(tok.decode(ids.get_ids(), true).unwrap(), "two red planes , near a river .");
        assert_eq!(words("Planes, 3x"), ["planes", ",", "3x"]);
    }
}

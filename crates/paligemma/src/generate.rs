//! Caption generation: greedy and beam search, with or without a KV cache, batched with left padding.
//!
//! Semantics follow transformers 5.23 `GenerationMixin` so that ids match it exactly: the prompt (image + prefix) is
//! prefilled with the bidirectional prefix mask, each generated token joins the causal suffix, generation stops at
//! `<eos>` or after `max_new_tokens`, finished rows of a greedy batch are fed `<pad>`, and beam search is the
//! vectorised algorithm of `_beam_search` (2K candidates per step, length-normalised finished hypotheses, the
//! default `early_stopping=False` heuristic). Without cache the whole sequence is re-run at every step, which must
//! (and is tested to) give the same ids.
use crate::{collate, select, PadSide, PaliGemma, Segment, Sequence};
use gemma::KvCache;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    /// 1 = greedy.
    pub num_beams: usize,
    pub use_cache: bool,
    /// Exponent of the length normalisation of finished beams (transformers' default 1.0).
    pub length_penalty: f64,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self { max_new_tokens: 32, num_beams: 1, use_cache: true, length_penalty: 1.0 }
    }
}

/// Generates a continuation for each prompt (sequences built without a suffix) with the given images
/// (`pixel_values [B, 3, H, W]`) and optional soft prompt. Returns, per prompt, the generated ids up to and
/// including `<eos>` (all `max_new_tokens` ids when it never came).
pub fn generate(
    model: &PaliGemma,
    prompts: &[Sequence],
    pixel_values: &Tensor,
    soft_prompt: Option<&Tensor>,
    cfg: &GenerationConfig,
) -> Vec<Vec<i64>> {
    run(model, prompts, pixel_values, soft_prompt, cfg, None).0
}

/// `generate`, also returning the wall time (seconds) spent in each block: vision tower + projector, embeddings,
/// the decoder stack, the output head, and the rest of the loop (batching, selection, cache reordering). The
/// benchmarks use it to say where generation time goes; on CUDA each block ends with a device synchronization, so
/// the profiled call is slower than a plain one.
pub fn generate_profiled(
    model: &PaliGemma,
    prompts: &[Sequence],
    pixel_values: &Tensor,
    soft_prompt: Option<&Tensor>,
    cfg: &GenerationConfig,
) -> (Vec<Vec<i64>>, Vec<(&'static str, f64)>) {
    let timings = Timings { device: model.device(), last: Instant::now(), blocks: Vec::new() };
    let (ids, t) = run(model, prompts, pixel_values, soft_prompt, cfg, Some(timings));
    (ids, t.map(|t| t.blocks).unwrap_or_default())
}

/// Block names of `generate_profiled` (the benchmark's Python side uses the same strings).
pub const BLOCK_VISION: &str = "vision tower + projector";
pub const BLOCK_EMBED: &str = "embeddings";
pub const BLOCK_DECODER: &str = "decoder stack (layers, final norm)";
pub const BLOCK_HEAD: &str = "output head";
pub const BLOCK_REST: &str = "rest of generate (masks, merge, selection, cache, glue)";

struct Timings {
    device: Device,
    last: Instant,
    blocks: Vec<(&'static str, f64)>,
}

impl Timings {
    fn lap(&mut self, name: &'static str) {
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
        let dt = self.last.elapsed().as_secs_f64();
        match self.blocks.iter_mut().find(|(n, _)| *n == name) {
            Some((_, t)) => *t += dt,
            None => self.blocks.push((name, dt)),
        }
        self.last = Instant::now();
    }
}

fn run(
    model: &PaliGemma,
    prompts: &[Sequence],
    pixel_values: &Tensor,
    soft_prompt: Option<&Tensor>,
    cfg: &GenerationConfig,
    timings: Option<Timings>,
) -> (Vec<Vec<i64>>, Option<Timings>) {
    if prompts.is_empty() || cfg.max_new_tokens == 0 {
        return (vec![vec![]; prompts.len()], timings);
    }
    tch::no_grad(|| {
        let batch =
            collate(prompts, PadSide::Left, model.config.pad_token_id).to_device(model.device());
        let mut state = State {
            model,
            ids: batch.ids,
            segments: batch.segments,
            feats: Tensor::new(),
            soft: soft_prompt.map(|s| s.shallow_clone()),
            cache: cfg.use_cache.then(|| {
                KvCache::with_headroom(model.language_model.layers.len(), cfg.max_new_tokens as i64)
            }),
            timings,
            decode_on_one_thread: smallmm_decodes(
                model,
                (prompts.len() * cfg.num_beams.max(1)) as i64,
            ),
            one_thread: None,
        };
        state.lap(BLOCK_REST);
        state.feats = model.image_features(&pixel_values.to_device(model.device()));
        state.lap(BLOCK_VISION);
        let ids =
            if cfg.num_beams <= 1 { greedy(&mut state, cfg) } else { beam_search(&mut state, cfg) };
        state.lap(BLOCK_REST);
        (ids, state.timings)
    })
}

/// Everything one decoding step needs; rows are batch rows (times beams).
struct State<'a> {
    model: &'a PaliGemma,
    ids: Tensor,
    segments: Tensor,
    feats: Tensor,
    soft: Option<Tensor>,
    cache: Option<KvCache>,
    timings: Option<Timings>,
    /// Whether cached steps run libtorch on one thread ([`smallmm_decodes`] for the decoding rows).
    decode_on_one_thread: bool,
    /// Held from the first cached step on when `decode_on_one_thread`.
    one_thread: Option<OneThread>,
}

/// Whether every product of a cached decoding step with `rows` rows runs in crates/smallmm (`smallmm::chosen`, the
/// rule `layers::Linear` and `gemma::Gemma::logits_decode` ask), on CPU. libtorch is then left the step's small
/// element-wise ops, which one thread runs faster than a team: a team's idle OpenMP workers spin for milliseconds after each op (libgomp's default wait
/// policy) on the cores smallmm's threads need. Measured on the 2-core development machine, mid-size PaliGemma, f32:
/// greedy step at batch 1 15.8 -> 12.0 ms, batch 8 22.0 -> 15.4 ms, beam 3 at batch 1 22.4 -> 17.2 ms
/// (docs/benchmarks.md, issue 14).
fn smallmm_decodes(model: &PaliGemma, rows: i64) -> bool {
    // A bf16 model's activations are bf16 too, so its products are bf16 × bf16.
    let bf16 = match model.language_model.embed_tokens.kind() {
        Kind::Float => false,
        Kind::BFloat16 => true,
        _ => return false,
    };
    let t = &model.config.text_config;
    let (h, q, kv, ff) = (
        t.hidden_size,
        t.num_attention_heads * t.head_dim,
        t.num_key_value_heads * t.head_dim,
        t.intermediate_size,
    );
    let products = [(q, h), (kv, h), (h, q), (ff, h), (h, ff), (t.vocab_size, h)];
    let rows = rows as usize;
    model.device() == tch::Device::Cpu
        && products.iter().all(|&(n, k)| {
            let kind = smallmm::WeightKind::of(bf16, bf16, k as usize);
            smallmm::chosen(rows, n as usize, k as usize, kind)
        })
}

/// libtorch on one intra-op thread while any `OneThread` lives; the count from before the first is restored when
/// the last is dropped. Counted, because libtorch's thread count is one per process and two generations may overlap
/// (a library user's threads): each saving and restoring its own would leave the process on one thread.
struct OneThread(());

/// Live guards and the thread count from before the first.
static ONE_THREAD: std::sync::Mutex<(usize, i32)> = std::sync::Mutex::new((0, 0));

impl OneThread {
    fn new() -> OneThread {
        let mut held = ONE_THREAD.lock().unwrap_or_else(|e| e.into_inner());
        if held.0 == 0 {
            held.1 = tch::get_num_threads();
            tch::set_num_threads(1);
        }
        held.0 += 1;
        OneThread(())
    }
}

impl Drop for OneThread {
    fn drop(&mut self) {
        let mut held = ONE_THREAD.lock().unwrap_or_else(|e| e.into_inner());
        held.0 -= 1;
        if held.0 == 0 {
            tch::set_num_threads(held.1);
        }
    }
}

impl State<'_> {
    fn lap(&mut self, name: &'static str) {
        if let Some(t) = &mut self.timings {
            t.lap(name);
        }
    }

    /// Next-token logits `[rows, V]` (f32) for the current sequences. With a cache, only the positions the cache
    /// has not seen yet are run.
    fn logits(&mut self) -> Tensor {
        self.lap(BLOCK_REST);
        let t = self.ids.size()[1];
        let seen = self.cache.as_ref().map_or(0, KvCache::len);
        if seen > 0 && self.decode_on_one_thread && self.one_thread.is_none() {
            self.one_thread = Some(OneThread::new());
        }
        let xs = if seen == 0 {
            self.model.embed(&self.ids, &self.segments, Some(&self.feats), self.soft.as_ref())
        } else {
            self.model.language_model.embed(&self.ids.narrow(1, seen, t - seen))
        };
        self.lap(BLOCK_EMBED);
        let h = self.model.decode_step(&xs, &self.segments, self.cache.as_mut());
        self.lap(BLOCK_DECODER);
        let last = h.narrow(1, h.size()[1] - 1, 1).squeeze_dim(1);
        let logits = self.model.language_model.logits_decode(&last).to_kind(Kind::Float);
        self.lap(BLOCK_HEAD);
        logits
    }

    /// Appends one generated token per row (`tokens [rows]`) to the causal suffix.
    fn push(&mut self, tokens: &Tensor) {
        let rows = self.ids.size()[0];
        self.ids = Tensor::cat(&[&self.ids, &tokens.view([rows, 1])], 1);
        let seg = Tensor::full([rows, 1], Segment::Suffix.id(), (Kind::Int64, self.ids.device()));
        self.segments = Tensor::cat(&[&self.segments, &seg], 1);
    }

    /// Keeps row `index[i]` as new row i (beam reordering and expansion). The image features and a per-row soft
    /// prompt follow only while the next step embeds the whole sequence (no cache, or an empty one): once the cache
    /// holds the prefix they are never read again, and copying them every step cost 6 MB per beam step at batch 8.
    fn select_rows(&mut self, index: &Tensor) {
        if keeps_every_row(index, self.ids.size()[0]) {
            return;
        }
        self.ids = self.ids.index_select(0, index);
        self.segments = self.segments.index_select(0, index);
        match &mut self.cache {
            Some(c) if !c.is_empty() => c.reorder(index),
            _ => {
                self.feats = self.feats.index_select(0, index);
                // A shared soft prompt `[P, D]` serves every row as it is; a per-row one `[B, P, D]` follows its rows.
                self.soft = self.soft.as_ref().map(|s| match s.dim() {
                    3 => s.index_select(0, index),
                    _ => s.shallow_clone(),
                });
            }
        }
    }
}

fn greedy(state: &mut State, cfg: &GenerationConfig) -> Vec<Vec<i64>> {
    let rows = state.ids.size()[0];
    let (eos, pad) = (state.model.config.eos_token_id, state.model.config.pad_token_id);
    let mut out = vec![vec![]; rows as usize];
    let mut finished = vec![false; rows as usize];
    for step in 0..cfg.max_new_tokens {
        let logits = state.logits();
        let next = select::argmax_rows(&logits)
            .unwrap_or_else(|| Vec::try_from(logits.argmax(-1, false)).expect("ids"));
        let mut fed = next.clone();
        for (r, &tok) in next.iter().enumerate() {
            if finished[r] {
                fed[r] = pad;
            } else {
                out[r].push(tok);
                finished[r] = tok == eos;
            }
        }
        if finished.iter().all(|&f| f) || step + 1 == cfg.max_new_tokens {
            break;
        }
        state.push(&Tensor::from_slice(&fed).to_device(state.ids.device()));
    }
    out
}

fn beam_search(state: &mut State, cfg: &GenerationConfig) -> Vec<Vec<i64>> {
    let dev = state.ids.device();
    let b = state.ids.size()[0];
    let k = cfg.num_beams as i64;
    let max_new = cfg.max_new_tokens as i64;
    let keep = 2 * k; // transformers: max(2, 1 + n_eos) * num_beams with one eos id
    let (eos, pad) = (state.model.config.eos_token_id, state.model.config.pad_token_id);
    let f32 = (Kind::Float, dev);
    let neg = -1.0e9;

    // Prefill once per prompt, then give every beam its copy.
    let first = state.logits();
    let expand = Tensor::arange(b, (Kind::Int64, dev)).repeat_interleave_self_int(k, 0, None);
    state.select_rows(&expand);
    let mut logits = first.index_select(0, &expand);

    let mut running_seqs = Tensor::full([b, k, max_new], pad, (Kind::Int64, dev));
    let mut running_scores = Tensor::zeros([b, k], f32);
    let _ = running_scores.narrow(1, 1, k - 1).fill_(neg);
    let mut seqs = running_seqs.copy();
    let mut beam_scores = Tensor::full([b, k], neg, f32);
    let mut is_finished = Tensor::zeros([b, k], (Kind::Bool, dev));
    let mut unsatisfied = Tensor::ones([b, 1], (Kind::Bool, dev));
    let top_k_mask = Tensor::arange(keep, (Kind::Int64, dev)).lt(k).unsqueeze(0);

    let mut log_probs_buf = None;
    for cur in 0..max_new {
        let vocab = logits.size()[1];
        let (topk_lp, topk_idx) = select::beam_candidates(&logits, &running_scores, keep as usize)
            .unwrap_or_else(|| candidates(&logits, &running_scores, keep, &mut log_probs_buf));
        let beam = topk_idx.divide_scalar_mode(vocab, "floor");
        let tokens = topk_idx.remainder(vocab);
        let topk_seqs = gather_beams(&running_seqs, &beam);
        topk_seqs.select(2, cur).copy_(&tokens);
        let hits = tokens.eq(eos);
        let hits = if cur + 1 >= max_new { hits.ones_like() } else { hits };

        // Best K candidates that have not just finished continue.
        let lp_running = &topk_lp + hits.to_kind(Kind::Float) * neg;
        let next = lp_running.topk(k, 1, true, true).1;
        running_seqs = gather_beams(&topk_seqs, &next);
        running_scores = lp_running.gather(1, &next, false);
        let running_beam = beam.gather(1, &next, false);

        // Candidates among the top K that just finished compete with the finished hypotheses so far.
        let did_finish = hits.logical_and(&top_k_mask);
        let scored = &topk_lp / ((cur + 1) as f64).powf(cfg.length_penalty)
            + unsatisfied.logical_not().to_kind(Kind::Float) * neg
            + did_finish.logical_not().to_kind(Kind::Float) * neg;
        let merged_scores = Tensor::cat(&[&beam_scores, &scored], 1);
        let best = merged_scores.topk(k, 1, true, true).1;
        seqs = gather_beams(&Tensor::cat(&[&seqs, &topk_seqs], 1), &best);
        beam_scores = merged_scores.gather(1, &best, false);
        is_finished = Tensor::cat(&[&is_finished, &did_finish], 1).gather(1, &best, false);

        // Early-stop heuristic (early_stopping=False): stop once no running beam can beat the worst finished one.
        let generated = cur + 1;
        let best_possible =
            running_scores.narrow(1, 0, 1) / (generated as f64).powf(cfg.length_penalty);
        let worst = beam_scores.min_dim(1, true).0.where_scalarother(&is_finished, neg);
        unsatisfied = unsatisfied.logical_and(&best_possible.gt_tensor(&worst).any_dim(1, true));
        let any_open = bool::try_from(unsatisfied.any()).expect("bool");
        let all_hit = bool::try_from(hits.all()).expect("bool");
        if !any_open || all_hit || generated == max_new {
            break;
        }
        let rows =
            (Tensor::arange(b, (Kind::Int64, dev)).unsqueeze(1) * k + running_beam).view([-1]);
        state.select_rows(&rows);
        state.push(&running_seqs.select(2, cur).reshape([-1]));
        logits = state.logits();
    }

    (0..b)
        .map(|i| {
            let row: Vec<i64> = Vec::try_from(seqs.get(i).get(0)).expect("ids");
            match row.iter().position(|&t| t == eos) {
                Some(p) => row[..=p].to_vec(),
                None => row,
            }
        })
        .collect()
}

/// Beam search's `2K` best candidates `[B, 2K]` (log-probabilities plus the running beams' scores, and their flat
/// indices `beam · V + token`) computed by libtorch, where `select::beam_candidates` leaves them to it. `buf` holds
/// the log-probabilities from one step to the next: a new tensor per step (up to 25 MB at batch 8) costs its page
/// faults again each time, the allocator handing memory that large back to the system.
fn candidates(
    logits: &Tensor,
    running_scores: &Tensor,
    keep: i64,
    buf: &mut Option<Tensor>,
) -> (Tensor, Tensor) {
    let (b, k) = running_scores.size2().expect("[B, K]");
    let vocab = logits.size()[1];
    let buf =
        buf.get_or_insert_with(|| Tensor::empty(logits.size(), (Kind::Float, logits.device())));
    let mut log_probs = logits.log_softmax_int_out(buf, -1, Kind::Float).view([b, k, vocab]);
    let _ = log_probs.g_add_(&running_scores.unsqueeze(-1));
    let log_probs = log_probs.view([b, k * vocab]);
    select::top_k_rows(&log_probs, keep as usize)
        .unwrap_or_else(|| log_probs.topk(keep, 1, true, true))
}

/// Whether `index` keeps each of `rows` rows in its place (beams that kept their order): then selecting them would
/// copy the whole KV cache for nothing.
fn keeps_every_row(index: &Tensor, rows: i64) -> bool {
    index.size() == [rows]
        && Vec::<i64>::try_from(index)
            .is_ok_and(|v| v.iter().enumerate().all(|(i, &r)| r == i as i64))
}

/// `t [B, K, ...]` gathered along the beam axis by `index [B, K']`.
fn gather_beams(t: &Tensor, index: &Tensor) -> Tensor {
    let (b, kk) = index.size2().expect("[B, K]");
    let rest = t.size()[2..].to_vec();
    let mut shape = vec![b, kk];
    shape.extend(&rest);
    let mut idx = index.shallow_clone();
    for _ in &rest {
        idx = idx.unsqueeze(-1);
    }
    t.gather(1, &idx.expand(&shape, false), false)
}

#[cfg(test)]
mod tests {
    use super::{candidates, keeps_every_row, OneThread};
    use tch::{Device, Kind, Tensor};

    #[test]
    fn libtorch_candidates_pick_what_select_picks() {
        // The fallback beam search takes where `select::beam_candidates` declines (ties, NaN, PGRS_SMALLMM=0).
        tch::manual_seed(3);
        let logits = Tensor::randn([6, 5000], (Kind::Float, Device::Cpu)) * 3.0;
        let scores = Tensor::randn([2, 3], (Kind::Float, Device::Cpu)) - 5.0;
        let mut buf = None;
        let (v, i) = candidates(&logits, &scores, 6, &mut buf);
        let (want_v, want_i) = crate::select::beam_candidates(&logits, &scores, 6).unwrap();
        assert!(i.equal(&want_i));
        assert!(f64::try_from((v - want_v).abs().max()).unwrap() < 1e-5);
        assert_eq!(
            buf.map(|b| b.size()),
            Some(vec![6, 5000]),
            "the buffer is kept for the next step"
        );
    }

    #[test]
    fn only_the_identity_index_keeps_every_row() {
        assert!(keeps_every_row(&Tensor::from_slice(&[0i64, 1, 2]), 3));
        assert!(!keeps_every_row(&Tensor::from_slice(&[0i64, 2, 2]), 3));
        assert!(!keeps_every_row(&Tensor::from_slice(&[1i64, 0, 2]), 3));
        // Beam search's expansion from one row per prompt to k: a new row count is never "in place".
        assert!(!keeps_every_row(&Tensor::from_slice(&[0i64, 0, 0]), 1));
        assert!(!keeps_every_row(&Tensor::from_slice(&[0i64, 1]), 3));
    }

    #[test]
    fn overlapping_one_thread_guards_restore_the_count_from_before_the_first() {
        let before = tch::get_num_threads();
        tch::set_num_threads(2);
        let a = OneThread::new();
        assert_eq!(tch::get_num_threads(), 1);
        let b = OneThread::new();
        drop(a); // the first one ends while the second still runs: still one thread
        assert_eq!(tch::get_num_threads(), 1);
        drop(b);
        assert_eq!(tch::get_num_threads(), 2);
        tch::set_num_threads(before);
    }
}

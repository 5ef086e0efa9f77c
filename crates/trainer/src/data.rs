//! From a dataset to model input: the seeded training sampler (one reference per image and step, resumable
//! cursor), the sequence builder, and images decoded and preprocessed in parallel.
use crate::config::ExperimentConfig;
use crate::parallel::{Counts, Shard};
use crate::TrainError;
use paligemma::{collate, Batch, PadSide, PaliGemmaTokenizer, Sequence, SequenceLayout};
use rayon::prelude::*;
use rsicd_data::{Dataset, ImagePreprocessor, Item, Sample, Split, TrainSampler};
use tch::{Device, Tensor};

pub fn load_dataset(cfg: &ExperimentConfig) -> Result<Dataset, TrainError> {
    let opts =
        rsicd_data::LoadOptions { format: cfg.data.format, image_dir: cfg.data.image_dir.clone() };
    Ok(Dataset::load_with(&cfg.data.path, &opts)?)
}

pub fn preprocessor(cfg: &ExperimentConfig, image_size: i64) -> ImagePreprocessor {
    ImagePreprocessor::new(image_size as u32, cfg.data.resample)
}

/// `[n, 3, S, S]` pixels for these items, decoded in parallel; an unreadable image is an error naming it.
pub fn pixels(
    items: &[&Item],
    pre: &ImagePreprocessor,
    device: Device,
) -> Result<Tensor, TrainError> {
    let per: Vec<Vec<f32>> = items
        .par_iter()
        .map(|item| item.decode_image().map(|img| pre.apply(&img)))
        .collect::<Result<_, _>>()?;
    let s = pre.size as i64;
    let flat: Vec<f32> = per.into_iter().flatten().collect();
    Ok(Tensor::from_slice(&flat).view([items.len() as i64, 3, s, s]).to_device(device))
}

/// Prompt token ids, computed once.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub prefix: Vec<i64>,
    pub sep: Vec<i64>,
}

impl Prompt {
    pub fn new(tok: &PaliGemmaTokenizer, prefix: &str) -> Result<Self, TrainError> {
        let (prefix, sep) = tok.encode_prompt(prefix)?;
        Ok(Self { prefix, sep })
    }

    pub fn sequence(
        &self,
        layout: &SequenceLayout,
        suffix: Option<&[i64]>,
    ) -> Result<Sequence, TrainError> {
        Ok(layout.build(&self.prefix, &self.sep, suffix)?)
    }
}

/// One training micro-batch: this rank's slice of the global micro-batch.
pub struct TrainBatch {
    pub batch: Batch,
    pub pixels: Tensor,
    pub samples: Vec<Sample>,
    /// What the loss normalises by, over this rank's slice and over the whole global micro-batch.
    pub counts: Counts,
    pub global: Counts,
}

pub struct TrainData {
    pub ds: Dataset,
    pub sampler: TrainSampler,
    pub pre: ImagePreprocessor,
    pub prompt: Prompt,
}

impl TrainData {
    pub fn new(
        ds: Dataset,
        cfg: &ExperimentConfig,
        pre: ImagePreprocessor,
        prompt: Prompt,
    ) -> Result<Self, TrainError> {
        let split = Split::parse(&cfg.data.train_split);
        let sampler = TrainSampler::for_split(&ds, &split, cfg.seed, cfg.data.lowercase);
        if sampler.is_empty() {
            return Err(TrainError::Config(format!(
                "the dataset {} has no `{}` images with captions",
                cfg.data.path.display(),
                cfg.data.train_split
            )));
        }
        Ok(Self { ds, sampler, pre, prompt })
    }

    /// The next global micro-batch of `n` samples per rank, drawn alike on every rank (so the samples one step
    /// consumes are those one process with the global batch consumes), and this rank's `n` of them: tokenized all
    /// (for the global counts), decoded only its own.
    pub fn next_batch(
        &mut self,
        n: usize,
        shard: Shard,
        tok: &PaliGemmaTokenizer,
        layout: &SequenceLayout,
        device: Device,
    ) -> Result<TrainBatch, TrainError> {
        let mut samples = self.sampler.next_batch(&self.ds, n * shard.world);
        let mut seqs = Vec::with_capacity(samples.len());
        for s in &samples {
            let suffix = tok.encode(&s.caption)?;
            seqs.push(self.prompt.sequence(layout, Some(&suffix))?);
        }
        let global = Counts::of(&seqs);
        let samples: Vec<Sample> = samples.drain(shard.range(n)).collect();
        let seqs: Vec<Sequence> = seqs.drain(shard.range(n)).collect();
        let items: Vec<&Item> = samples.iter().map(|s| &self.ds.items[s.item]).collect();
        let pixels = pixels(&items, &self.pre, device)?;
        let batch = collate(&seqs, PadSide::Right, layout.pad_id).to_device(device);
        Ok(TrainBatch { batch, pixels, samples, counts: Counts::of(&seqs), global })
    }
}

//! The single sequence builder: `[image x N][soft?][<bos>][prefix][soft?]["\n"][suffix][<eos>]`, with labels on the
//! suffix and `<eos>` only, and batch collation with explicit padding sides (right for training, left for
//! generation). Mirrors the HF `PaliGemmaProcessor` token layout (checked against it in the tests) and big_vision's
//! `masked_concat([prefix, sep, suffix], mask_ar=[0, 0, 1], mask_loss=[0, 0, 1])`.
use crate::{PaliGemmaError, Result, Segment};
use tch::{Device, Kind, Tensor};

/// Label value of positions that are not supervised (PyTorch's `ignore_index`).
pub const IGNORE: i64 = -100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftPromptPlacement {
    /// Right after the image tokens, before `<bos>`.
    AfterImage,
    /// After the text prefix, before the `"\n"` separator.
    AfterPrefix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceLayout {
    pub num_image_tokens: usize,
    pub image_token_id: i64,
    pub bos_id: i64,
    pub eos_id: i64,
    pub pad_id: i64,
    /// Soft-prompt slots: `(count, placement)`; their ids are `pad_id` placeholders, their embeddings are injected.
    pub soft_prompt: Option<(usize, SoftPromptPlacement)>,
    /// Longest allowed sequence (image + soft + text). Longer examples lose suffix tokens from the end; `<eos>` is
    /// kept so the model still learns to stop. `None`: no limit.
    pub max_len: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    pub ids: Vec<i64>,
    pub segments: Vec<Segment>,
    /// `ids` where supervised (suffix + `<eos>`), `IGNORE` elsewhere; unshifted, as HF labels are.
    pub labels: Vec<i64>,
}

impl Sequence {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl SequenceLayout {
    pub fn new(
        num_image_tokens: usize,
        image_token_id: i64,
        bos_id: i64,
        eos_id: i64,
        pad_id: i64,
    ) -> Self {
        Self {
            num_image_tokens,
            image_token_id,
            bos_id,
            eos_id,
            pad_id,
            soft_prompt: None,
            max_len: None,
        }
    }

    /// The layout of a model: its image-token count and the tokenizer's special ids (no soft prompt, no length cap).
    pub fn for_model(
        config: &crate::PaliGemmaConfig,
        tokenizer: &crate::PaliGemmaTokenizer,
    ) -> Self {
        Self::new(
            config.num_image_tokens() as usize,
            tokenizer.image_id,
            tokenizer.bos_id,
            tokenizer.eos_id,
            tokenizer.pad_id,
        )
    }

    /// `prefix` and `sep` (the tokenized `"\n"`) are token ids without special tokens; `suffix: None` builds a
    /// generation prompt (ends with the separator).
    pub fn build(&self, prefix: &[i64], sep: &[i64], suffix: Option<&[i64]>) -> Result<Sequence> {
        let mut s = Sequence { ids: vec![], segments: vec![], labels: vec![] };
        let push = |s: &mut Sequence, ids: &[i64], seg: Segment| {
            for &id in ids {
                s.ids.push(id);
                s.segments.push(seg);
                s.labels.push(if seg == Segment::Suffix { id } else { IGNORE });
            }
        };
        let soft = |p: SoftPromptPlacement| match self.soft_prompt {
            Some((n, placement)) if placement == p => vec![self.pad_id; n],
            _ => vec![],
        };
        push(&mut s, &vec![self.image_token_id; self.num_image_tokens], Segment::Image);
        push(&mut s, &soft(SoftPromptPlacement::AfterImage), Segment::SoftPrompt);
        push(&mut s, &[self.bos_id], Segment::Prefix);
        push(&mut s, prefix, Segment::Prefix);
        push(&mut s, &soft(SoftPromptPlacement::AfterPrefix), Segment::SoftPrompt);
        push(&mut s, sep, Segment::Prefix);
        if let Some(max) = self.max_len {
            if s.len() + usize::from(suffix.is_some()) > max {
                return Err(PaliGemmaError::Sequence(format!(
                    "the prompt alone takes {} positions ({} image tokens), more than max_len {max}",
                    s.len(),
                    self.num_image_tokens
                )));
            }
        }
        if let Some(suffix) = suffix {
            let room = self.max_len.map_or(usize::MAX, |m| m - s.len() - 1);
            push(&mut s, &suffix[..suffix.len().min(room)], Segment::Suffix);
            push(&mut s, &[self.eos_id], Segment::Suffix);
        }
        Ok(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadSide {
    /// Training: pads after the sequence.
    Right,
    /// Generation: pads before the prompt, so every row's next token goes at the same column.
    Left,
}

/// A collated batch: `ids`, `segments` (segment ids) and `labels`, all `[B, L]` int64.
#[derive(Debug)]
pub struct Batch {
    pub ids: Tensor,
    pub segments: Tensor,
    pub labels: Tensor,
}

impl Batch {
    pub fn to_device(&self, device: Device) -> Self {
        Self {
            ids: self.ids.to_device(device),
            segments: self.segments.to_device(device),
            labels: self.labels.to_device(device),
        }
    }

    /// Number of supervised tokens (labels other than `IGNORE`).
    pub fn supervised_tokens(&self) -> i64 {
        i64::try_from(self.labels.ne(IGNORE).sum(Kind::Int64)).expect("scalar")
    }
}

pub fn collate(seqs: &[Sequence], side: PadSide, pad_id: i64) -> Batch {
    let len = seqs.iter().map(Sequence::len).max().unwrap_or(0);
    let (mut ids, mut segs, mut labels) = (vec![], vec![], vec![]);
    for s in seqs {
        let pad = len - s.len();
        let (before, after) = if side == PadSide::Left { (pad, 0) } else { (0, pad) };
        ids.extend(
            std::iter::repeat_n(pad_id, before)
                .chain(s.ids.iter().copied())
                .chain(std::iter::repeat_n(pad_id, after)),
        );
        let seg_ids = s.segments.iter().map(|g| g.id());
        segs.extend(
            std::iter::repeat_n(Segment::Pad.id(), before)
                .chain(seg_ids)
                .chain(std::iter::repeat_n(Segment::Pad.id(), after)),
        );
        labels.extend(
            std::iter::repeat_n(IGNORE, before)
                .chain(s.labels.iter().copied())
                .chain(std::iter::repeat_n(IGNORE, after)),
        );
    }
    let shape = [seqs.len() as i64, len as i64];
    Batch {
        ids: Tensor::from_slice(&ids).view(shape),
        segments: Tensor::from_slice(&segs).view(shape),
        labels: Tensor::from_slice(&labels).view(shape),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> SequenceLayout {
        SequenceLayout::new(4, 99, 2, 1, 0)
    }

    #[test]
    fn layout_and_labels() {
        let s = layout().build(&[10, 11], &[5], Some(&[20, 21, 22])).unwrap();
        assert_eq!(s.ids, [99, 99, 99, 99, 2, 10, 11, 5, 20, 21, 22, 1]);
        assert_eq!(s.labels, [-100, -100, -100, -100, -100, -100, -100, -100, 20, 21, 22, 1]);
        use Segment::*;
        assert_eq!(
            s.segments,
            [
                Image, Image, Image, Image, Prefix, Prefix, Prefix, Prefix, Suffix, Suffix, Suffix,
                Suffix
            ]
        );
        let p = layout().build(&[10, 11], &[5], None).unwrap();
        assert_eq!(p.ids, [99, 99, 99, 99, 2, 10, 11, 5]);
        assert!(p.labels.iter().all(|&l| l == IGNORE));
    }

    #[test]
    fn soft_prompt_slots() {
        let mut l = layout();
        l.soft_prompt = Some((2, SoftPromptPlacement::AfterImage));
        let s = l.build(&[10], &[5], Some(&[20])).unwrap();
        assert_eq!(s.ids, [99, 99, 99, 99, 0, 0, 2, 10, 5, 20, 1]);
        assert_eq!(s.segments[4], Segment::SoftPrompt);
        l.soft_prompt = Some((2, SoftPromptPlacement::AfterPrefix));
        let s = l.build(&[10], &[5], Some(&[20])).unwrap();
        assert_eq!(s.ids, [99, 99, 99, 99, 2, 10, 0, 0, 5, 20, 1]);
        assert_eq!(s.segments[6..8], [Segment::SoftPrompt, Segment::SoftPrompt]);
    }

    #[test]
    fn truncation_cuts_suffix_keeps_eos() {
        let mut l = layout();
        l.max_len = Some(10);
        let s = l.build(&[10], &[5], Some(&[20, 21, 22, 23])).unwrap();
        assert_eq!(s.ids, [99, 99, 99, 99, 2, 10, 5, 20, 21, 1]);
        l.max_len = Some(7);
        assert!(l.build(&[10], &[5], Some(&[20])).is_err());
    }

    #[test]
    fn collate_pads_on_the_requested_side() {
        let a = layout().build(&[10], &[5], Some(&[20])).unwrap();
        let b = layout().build(&[10, 11, 12], &[5], Some(&[20])).unwrap();
        let r = collate(&[a.clone(), b.clone()], PadSide::Right, 0);
        assert_eq!(Vec::<i64>::try_from(r.ids.get(0)).unwrap()[a.len()..], [0, 0]);
        assert_eq!(Vec::<i64>::try_from(r.segments.get(0)).unwrap()[a.len()..], [0, 0]);
        assert_eq!(Vec::<i64>::try_from(r.labels.get(0)).unwrap()[a.len()..], [IGNORE, IGNORE]);
        let l = collate(&[a.clone(), b], PadSide::Left, 0);
        assert_eq!(Vec::<i64>::try_from(l.ids.get(0)).unwrap()[2..], a.ids[..]);
        assert_eq!(r.supervised_tokens(), 4);
    }
}

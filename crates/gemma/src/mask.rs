//! Attention masks from per-token segment information, and RoPE positions.
//!
//! One rule covers causal LM, PaliGemma's prefix-LM and padding (big_vision `make_attn_mask`): with `ar` = 1 for
//! tokens that are causal (suffix) and 0 for tokens of a bidirectional block (image + prefix), and `c = cumsum(ar)`,
//! query i may attend key j iff `c_j <= c_i` and both are valid (not padding). A padding query additionally sees
//! itself, so its softmax row is never empty (its output is never used).
use tch::{Kind, Tensor};

/// `ar [B, T]` (0/1), `valid [B, T]` (bool) over the whole sequence, cache included -> bool `[B, 1, q_len, T]` for the
/// last `q_len` positions as queries (true = may attend).
pub fn attention_mask(ar: &Tensor, valid: &Tensor, q_len: i64) -> Tensor {
    let t = ar.size()[1];
    let c = ar.cumsum(1, Kind::Int64);
    let c_q = c.narrow(1, t - q_len, q_len).unsqueeze(2);
    let c_k = c.unsqueeze(1);
    let valid_q = valid.narrow(1, t - q_len, q_len).unsqueeze(2);
    let valid_k = valid.unsqueeze(1);
    let allowed = c_k.le_tensor(&c_q).logical_and(&valid_k).logical_and(&valid_q);
    let q_idx = Tensor::arange_start(t - q_len, t, (Kind::Int64, ar.device())).unsqueeze(1);
    let k_idx = Tensor::arange(t, (Kind::Int64, ar.device())).unsqueeze(0);
    let diag = q_idx.eq_tensor(&k_idx).unsqueeze(0);
    allowed.logical_or(&diag).unsqueeze(1)
}

/// `full [B, 1, q_len, T]` (from `attention_mask`, same `ar`) narrowed to a sliding window for Gemma-2's local layers:
/// key j stays visible to query i iff `i - j < window`, or both are in the same bidirectional block (same
/// `cumsum(ar)`, e.g. PaliGemma's image + prefix). Indices count every position, padding included: transformers 5.23
/// builds the window on cache positions (`sliding_window_overlay`) and lets PaliGemma's prefix block override it
/// (`block_sequence_ids`), and the KV cache here keeps all positions, so one rule serves prefill and decoding.
pub fn sliding_window_mask(full: &Tensor, ar: &Tensor, q_len: i64, window: i64) -> Tensor {
    let t = ar.size()[1];
    let c = ar.cumsum(1, Kind::Int64);
    let same_block = c.narrow(1, t - q_len, q_len).unsqueeze(2).eq_tensor(&c.unsqueeze(1));
    let q_idx = Tensor::arange_start(t - q_len, t, (Kind::Int64, ar.device())).unsqueeze(1);
    let k_idx = Tensor::arange(t, (Kind::Int64, ar.device())).unsqueeze(0);
    let near = (q_idx - k_idx).lt(window).unsqueeze(0);
    full.logical_and(&near.logical_or(&same_block).unsqueeze(1))
}

/// RoPE positions: 1-based count of valid tokens so far (`cumsum(valid)`, transformers' PaliGemma convention), for
/// the last `q_len` positions. Padding never shifts the positions of real tokens, so a left-padded row gets the same
/// positions as the unpadded sequence.
pub fn positions(valid: &Tensor, q_len: i64) -> Tensor {
    let t = valid.size()[1];
    valid.to_kind(Kind::Int64).cumsum(1, Kind::Int64).narrow(1, t - q_len, q_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn rows(mask: &Tensor) -> Vec<Vec<i64>> {
        let m = mask.squeeze_dim(1).get(0).to_kind(Kind::Int64);
        (0..m.size()[0]).map(|i| Vec::<i64>::try_from(m.get(i)).unwrap()).collect()
    }

    #[test]
    fn prefix_block_is_bidirectional_suffix_causal_pads_hidden() {
        // two prefix tokens, two suffix tokens, one pad (big_vision's example layout)
        let ar = Tensor::from_slice(&[0i64, 0, 1, 1, 1]).unsqueeze(0);
        let valid = Tensor::from_slice(&[true, true, true, true, false]).unsqueeze(0);
        let m = attention_mask(&ar, &valid, 5);
        assert_eq!(
            rows(&m),
            vec![
                vec![1, 1, 0, 0, 0],
                vec![1, 1, 0, 0, 0],
                vec![1, 1, 1, 0, 0],
                vec![1, 1, 1, 1, 0],
                vec![0, 0, 0, 0, 1], // a pad row only sees itself
            ]
        );
        // the last query row alone, as in cached decoding
        let last = attention_mask(&ar, &valid, 1);
        assert_eq!(rows(&last), vec![vec![0, 0, 0, 0, 1]]);
        let m3 = attention_mask(&ar, &valid, 2);
        assert_eq!(rows(&m3)[0], vec![1, 1, 1, 1, 0]);
    }

    #[test]
    fn sliding_window_keeps_the_prefix_block_whole() {
        // three prefix tokens (one block), four causal tokens, window 2
        let ar = Tensor::from_slice(&[0i64, 0, 0, 1, 1, 1, 1]).unsqueeze(0);
        let valid = ar.ones_like().to_kind(Kind::Bool);
        let full = attention_mask(&ar, &valid, 7);
        let m = sliding_window_mask(&full, &ar, 7, 2);
        assert_eq!(
            rows(&m),
            vec![
                vec![1, 1, 1, 0, 0, 0, 0], // the block sees itself whole, whatever the distance
                vec![1, 1, 1, 0, 0, 0, 0],
                vec![1, 1, 1, 0, 0, 0, 0],
                vec![0, 0, 1, 1, 0, 0, 0], // causal tokens: themselves and the one before
                vec![0, 0, 0, 1, 1, 0, 0],
                vec![0, 0, 0, 0, 1, 1, 0],
                vec![0, 0, 0, 0, 0, 1, 1],
            ]
        );
        // the last query alone (cached decoding) gets the last row
        let last = sliding_window_mask(&attention_mask(&ar, &valid, 1), &ar, 1, 2);
        assert_eq!(rows(&last), vec![vec![0, 0, 0, 0, 0, 1, 1]]);
    }

    #[test]
    fn positions_ignore_left_padding() {
        let valid = Tensor::from_slice(&[false, false, true, true, true]).unsqueeze(0);
        assert_eq!(Vec::<i64>::try_from(positions(&valid, 5).get(0)).unwrap(), vec![0, 0, 1, 2, 3]);
        assert_eq!(Vec::<i64>::try_from(positions(&valid, 2).get(0)).unwrap(), vec![2, 3]);
        let _ = Device::Cpu;
    }
}

//! Separable convolution resampling of interleaved RGB images.
//!
//! Reference: Pillow's `libImaging/Resample.c` (`precompute_coeffs`, `normalize_coeffs_8bpc`,
//! `ImagingResampleHorizontal_8bpc` / `Vertical_8bpc`). The 8-bit path reproduces Pillow bit for bit: the same
//! kernel support scaled by the downscale factor (which is what makes it antialiased), the same rounding of the
//! window bounds, 22-bit fixed-point weights, horizontal pass first with an 8-bit intermediate. That is what
//! `Image.resize(size, BICUBIC)` does inside the HF `SiglipImageProcessor` (PIL backend), so PaliGemma sees the
//! same pixels it was trained on.
//!
//! The float path keeps the same windows and weights but no rounding anywhere; with the triangle filter it is
//! TF's `tf.image.resize(..., "bilinear", antialias=True)`, the big_vision pipeline.

/// Interpolation kernel, named after Pillow's filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Keys cubic convolution with a = -0.5, support 2.
    Bicubic,
    /// Linear interpolation (tent), support 1.
    Triangle,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Triangle => 1.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Triangle => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
        }
    }
}

/// For each output position: the first input index, the number of taps, and `ksize` normalized weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<f64>,
}

fn precompute_coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    // Pillow passes the box edges as C floats.
    let scale = f64::from(in_size as f32) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0.0f64; out_size * ksize];
    let ss = 1.0 / filterscale;
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // `as i64` truncates toward zero, as C's `(int)` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let k = &mut weights[xx * ksize..xx * ksize + n];
        let mut total = 0.0;
        for (x, w) in k.iter_mut().enumerate() {
            *w = filter.eval(((x + xmin) as f64 - center + 0.5) * ss);
            total += *w;
        }
        if total != 0.0 {
            k.iter_mut().for_each(|w| *w /= total);
        }
        bounds.push((xmin, n));
    }
    Coeffs { ksize, bounds, weights }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn fixed_point(weights: &[f64]) -> Vec<i32> {
    let one = f64::from(1u32 << PRECISION_BITS);
    weights
        .iter()
        .map(|&w| if w < 0.0 { (-0.5 + w * one) as i32 } else { (0.5 + w * one) as i32 })
        .collect()
}

/// `acc[i] += src[i] * k`: the inner loop of both passes. Baseline x86-64 (SSE2) has no 32-bit vector multiply,
/// so on CPUs with AVX2 the same code is compiled a second time with AVX2 enabled and chosen at run time.
#[inline(always)]
fn mac_generic(acc: &mut [i32], src: &[u8], k: i32) {
    for (a, &p) in acc.iter_mut().zip(src) {
        *a += i32::from(p) * k;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn mac_avx2(acc: &mut [i32], src: &[u8], k: i32) {
    mac_generic(acc, src, k)
}

#[inline]
fn mac(acc: &mut [i32], src: &[u8], k: i32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above; the result is cached by std).
        return unsafe { mac_avx2(acc, src, k) };
    }
    mac_generic(acc, src, k)
}

#[inline]
fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes an interleaved RGB8 buffer (`w x h`) to `out_w x out_h`, bit-exact with Pillow's `Image.resize`.
pub fn resize_rgb8(
    src: &[u8],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<u8> {
    assert_eq!(src.len(), w * h * 3, "RGB buffer length does not match {w}x{h}");
    if (w, h) == (out_w, out_h) {
        return src.to_vec();
    }
    let vert = precompute_coeffs(h, out_h, filter);
    // Horizontal pass only over the rows the vertical pass will read. It runs on the transposed image so that,
    // like the vertical pass, each tap is one multiply-add over a contiguous run of pixels (which the compiler
    // vectorizes), instead of a short gather per output pixel. Integer sums do not depend on order, so the result
    // is still Pillow's bit for bit.
    let (tmp, tmp_rows_start) = if w != out_w {
        let horiz = precompute_coeffs(w, out_w, filter);
        let first = vert.bounds.first().map_or(0, |b| b.0);
        let last = vert.bounds.last().map_or(0, |b| b.0 + b.1);
        let rows = last - first;
        let kk = fixed_point(&horiz.weights);
        let col_len = rows * 3;
        // cols[x] = input column x over rows first..last, pixel-interleaved.
        let mut cols = vec![0u8; w * col_len];
        for (r, y) in (first..last).enumerate() {
            let row_in = &src[y * w * 3..(y + 1) * w * 3];
            for (x, px) in row_in.chunks_exact(3).enumerate() {
                cols[x * col_len + r * 3..x * col_len + r * 3 + 3].copy_from_slice(px);
            }
        }
        let mut out_cols = vec![0u8; out_w * col_len];
        let mut acc = vec![0i32; col_len];
        for (xx, out_col) in out_cols.chunks_exact_mut(col_len).enumerate() {
            let (xmin, n) = horiz.bounds[xx];
            acc.fill(1 << (PRECISION_BITS - 1));
            for (t, &kv) in kk[xx * horiz.ksize..xx * horiz.ksize + n].iter().enumerate() {
                mac(&mut acc, &cols[(xmin + t) * col_len..(xmin + t + 1) * col_len], kv);
            }
            for (o, &a) in out_col.iter_mut().zip(&acc) {
                *o = clip8(a);
            }
        }
        let mut tmp = vec![0u8; rows * out_w * 3];
        for (xx, out_col) in out_cols.chunks_exact(col_len).enumerate() {
            for (r, px) in out_col.chunks_exact(3).enumerate() {
                tmp[(r * out_w + xx) * 3..(r * out_w + xx) * 3 + 3].copy_from_slice(px);
            }
        }
        (tmp, first)
    } else {
        (src.to_vec(), 0)
    };
    if h == out_h {
        return tmp;
    }
    let kk = fixed_point(&vert.weights);
    let stride = out_w * 3;
    let mut out = vec![0u8; out_h * stride];
    let mut acc = vec![0i32; stride];
    for (yy, row_out) in out.chunks_exact_mut(stride).enumerate() {
        let (ymin, n) = vert.bounds[yy];
        acc.fill(1 << (PRECISION_BITS - 1));
        for (i, &kv) in kk[yy * vert.ksize..yy * vert.ksize + n].iter().enumerate() {
            let y = ymin + i - tmp_rows_start;
            mac(&mut acc, &tmp[y * stride..(y + 1) * stride], kv);
        }
        for (o, &a) in row_out.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Resizes an interleaved RGB8 buffer to interleaved `f32` values on the 0..=255 scale, without rounding.
pub fn resize_rgb_f32(
    src: &[u8],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<f32> {
    assert_eq!(src.len(), w * h * 3, "RGB buffer length does not match {w}x{h}");
    let horiz = precompute_coeffs(w, out_w, filter);
    let vert = precompute_coeffs(h, out_h, filter);
    let first = vert.bounds.first().map_or(0, |b| b.0);
    let last = vert.bounds.last().map_or(0, |b| b.0 + b.1);
    let kh: Vec<f32> = horiz.weights.iter().map(|&v| v as f32).collect();
    let kv: Vec<f32> = vert.weights.iter().map(|&v| v as f32).collect();
    let stride = out_w * 3;
    let mut tmp = vec![0f32; (last - first) * stride];
    for (row_out, y) in tmp.chunks_exact_mut(stride).zip(first..last) {
        let row_in = &src[y * w * 3..(y + 1) * w * 3];
        for (xx, px) in row_out.chunks_exact_mut(3).enumerate() {
            let (xmin, n) = horiz.bounds[xx];
            let mut acc = [0f32; 3];
            for (&k, p) in kh[xx * horiz.ksize..xx * horiz.ksize + n]
                .iter()
                .zip(row_in[xmin * 3..(xmin + n) * 3].chunks_exact(3))
            {
                acc[0] += f32::from(p[0]) * k;
                acc[1] += f32::from(p[1]) * k;
                acc[2] += f32::from(p[2]) * k;
            }
            px.copy_from_slice(&acc);
        }
    }
    let mut out = vec![0f32; out_h * stride];
    for (yy, row_out) in out.chunks_exact_mut(stride).enumerate() {
        let (ymin, n) = vert.bounds[yy];
        for (i, &k) in kv[yy * vert.ksize..yy * vert.ksize + n].iter().enumerate() {
            let y = ymin + i - first;
            for (o, &p) in row_out.iter_mut().zip(&tmp[y * stride..(y + 1) * stride]) {
                *o += p * k;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_windows_stay_inside() {
        for (i, o) in [(500, 224), (256, 224), (224, 224), (32, 224), (7, 3)] {
            for f in [Filter::Bicubic, Filter::Triangle] {
                let c = precompute_coeffs(i, o, f);
                for (xx, &(xmin, n)) in c.bounds.iter().enumerate() {
                    assert!(n >= 1 && xmin + n <= i, "{i}->{o} {f:?} out {xx}: window {xmin}+{n}");
                    let s: f64 = c.weights[xx * c.ksize..xx * c.ksize + n].iter().sum();
                    assert!((s - 1.0).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 37 * 23 * 3];
        for f in [Filter::Bicubic, Filter::Triangle] {
            assert!(resize_rgb8(&src, 37, 23, 16, 11, f).iter().all(|&v| v == 77));
            assert!(resize_rgb8(&src, 37, 23, 50, 40, f).iter().all(|&v| v == 77));
            assert!(resize_rgb_f32(&src, 37, 23, 16, 11, f)
                .iter()
                .all(|&v| (v - 77.0).abs() < 1e-3));
        }
    }

    #[test]
    fn two_to_one_triangle_averages_pairs() {
        // Downscaling by 2 with an antialiased tent: output = (a + b) / 2 of each input pair (plus
        // quarter weights from neighbours clipped away at the edges): check the interior by hand.
        let row: Vec<u8> =
            [0u8, 0, 100, 100, 200, 200, 40, 40].iter().flat_map(|&v| [v, v, v]).collect();
        let out = resize_rgb_f32(&row, 8, 1, 4, 1, Filter::Triangle);
        // Output 1 has center 3.0 in input coordinates: taps 1..=4 at distance 1.5,0.5,0.5,1.5 (scaled by 1/2):
        // weights .25,.75,.75,.25 normalized by 2 -> (0*.25 + 100*.75 + 100*.75 + 200*.25) / 2 = 100.
        assert!((out[3] - 100.0).abs() < 1e-4, "{out:?}");
        assert!((out[6] - (100.0 * 0.25 + 200.0 * 1.5 + 40.0 * 0.25) / 2.0).abs() < 1e-4);
    }
}

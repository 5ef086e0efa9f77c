//! PaliGemma image preprocessing: decode, convert to RGB, resize to a square, scale to [-1, 1], CHW `f32`.
//!
//! Reference: the HF `SiglipImageProcessor` in PaliGemma's `preprocessor_config.json` (resize to exactly
//! `size x size`, aspect ratio not kept, PIL bicubic on the uint8 image, `x * (1/255)`, mean = std = 0.5), and
//! big_vision's `decode | resize(size, antialias=True) | value_range(-1, 1)` for [`Resample::BilinearAntialias`].
//! Every constant is in `docs/data.md`; `tests/preprocess_golden.rs` checks the output against the HF processor.
use std::path::{Path, PathBuf};

use image::{DynamicImage, RgbImage};
use rayon::prelude::*;

use crate::decode::{decode_file, into_rgb8, to_rgb8};
use crate::resize::{resize_rgb8, resize_rgb_f32, Filter};
use crate::DataError;

/// How images are resized to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Resample {
    /// Pillow bicubic (a = -0.5, support widened when downscaling), rounded to 8 bits: what the HF
    /// `SiglipImageProcessor` feeds PaliGemma. Bit-exact with Pillow on the same decoded pixels.
    #[default]
    Bicubic,
    /// Bilinear with antialiasing in float, no rounding: TF `tf.image.resize(antialias=True)` as big_vision uses.
    BilinearAntialias,
}

impl Resample {
    /// Stable lowercase name (CLI values, cache keys, bundle configs).
    pub fn name(self) -> &'static str {
        match self {
            Resample::Bicubic => "bicubic",
            Resample::BilinearAntialias => "bilinear-antialias",
        }
    }
}

impl std::str::FromStr for Resample {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "bicubic" => Ok(Resample::Bicubic),
            "bilinear-antialias" | "bilinear" | "big-vision" => Ok(Resample::BilinearAntialias),
            other => Err(DataError::Invalid(format!(
                "unknown resample method {other:?}: expected \"bicubic\" (HF) or \"bilinear-antialias\" (big_vision)"
            ))),
        }
    }
}

/// Turns images into PaliGemma pixel input: `3 * size * size` floats in [-1, 1], channels first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImagePreprocessor {
    pub size: u32,
    pub resample: Resample,
}

impl ImagePreprocessor {
    pub fn new(size: u32, resample: Resample) -> Self {
        assert!(size > 0, "image size must be positive");
        ImagePreprocessor { size, resample }
    }

    /// Number of floats one image becomes.
    pub fn len(&self) -> usize {
        3 * self.size as usize * self.size as usize
    }

    /// Always false; present because `len` is.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Decodes (JPEG/PNG/TIFF/WebP, 8/16-bit, RGB/RGBA/gray/palette), converts to RGB, resizes and normalizes.
    pub fn load(&self, path: &Path) -> Result<Vec<f32>, DataError> {
        let mut out = vec![0f32; self.len()];
        self.apply_rgb_into(&into_rgb8(decode_file(path)?), &mut out);
        Ok(out)
    }

    /// Preprocesses an already decoded image.
    pub fn apply(&self, img: &DynamicImage) -> Vec<f32> {
        let mut out = vec![0f32; self.len()];
        self.apply_rgb_into(&to_rgb8(img), &mut out);
        out
    }

    /// Preprocesses into a caller-owned slice of length [`Self::len`] (e.g. one row of a batch buffer).
    pub fn apply_rgb_into(&self, rgb: &RgbImage, out: &mut [f32]) {
        assert_eq!(out.len(), self.len(), "output slice must hold 3*size*size floats");
        let s = self.size as usize;
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        match self.resample {
            Resample::Bicubic => {
                let resized = resize_rgb8(rgb.as_raw(), w, h, s, s, Filter::Bicubic);
                let lut: [f32; 256] = std::array::from_fn(|v| v as f32 / 127.5 - 1.0);
                hwc_to_chw(&resized, out, |v| lut[usize::from(v)]);
            }
            Resample::BilinearAntialias => {
                let resized = resize_rgb_f32(rgb.as_raw(), w, h, s, s, Filter::Triangle);
                hwc_to_chw(&resized, out, |v| v / 127.5 - 1.0);
            }
        }
    }

    /// The resized 8-bit RGB image before normalization. For [`Resample::Bicubic`], `u8 / 127.5 - 1` recovers
    /// [`Self::apply`] exactly (that is what makes a u8 cache lossless); for [`Resample::BilinearAntialias`] it is
    /// Pillow's bilinear rounded to 8 bits, fine for previews but not the float big_vision path.
    pub fn resize_u8(&self, rgb: &RgbImage) -> RgbImage {
        let s = self.size;
        let raw = resize_rgb8(
            rgb.as_raw(),
            rgb.width() as usize,
            rgb.height() as usize,
            s as usize,
            s as usize,
            match self.resample {
                Resample::Bicubic => Filter::Bicubic,
                Resample::BilinearAntialias => Filter::Triangle,
            },
        );
        RgbImage::from_raw(s, s, raw).expect("resize returns size*size*3 bytes")
    }

    /// Loads many images in parallel (rayon); results keep the input order, one per path.
    pub fn load_batch(&self, paths: &[PathBuf]) -> Vec<Result<Vec<f32>, DataError>> {
        paths.par_iter().map(|p| self.load(p)).collect()
    }

    /// Loads many images in parallel into one contiguous `[n, 3, size, size]` buffer; the first failure is
    /// returned (naming its file).
    pub fn load_batch_contiguous(&self, paths: &[PathBuf]) -> Result<Vec<f32>, DataError> {
        let mut buf = vec![0f32; paths.len() * self.len()];
        buf.par_chunks_mut(self.len()).zip(paths.par_iter()).try_for_each(|(out, path)| {
            self.apply_rgb_into(&into_rgb8(decode_file(path)?), out);
            Ok::<_, DataError>(())
        })?;
        Ok(buf)
    }
}

impl ImagePreprocessor {
    /// Preprocesses dataset items (files or embedded parquet bytes) in parallel into one `[n, 3, size, size]`
    /// buffer; the first failure is returned, naming its file. For repeated epochs see `cache::PixelCache`.
    pub fn load_items(&self, items: &[&crate::Item]) -> Result<Vec<f32>, DataError> {
        let mut buf = vec![0f32; items.len() * self.len()];
        buf.par_chunks_mut(self.len()).zip(items.par_iter()).try_for_each(|(out, item)| {
            self.apply_rgb_into(&into_rgb8(item.decode_image()?), out);
            Ok::<_, DataError>(())
        })?;
        Ok(buf)
    }
}

fn hwc_to_chw<T: Copy>(hwc: &[T], out: &mut [f32], f: impl Fn(T) -> f32) {
    let plane = hwc.len() / 3;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        r[i] = f(px[0]);
        g[i] = f(px[1]);
        b[i] = f(px[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn same_size_bicubic_is_plain_normalization_in_chw_order() {
        let img = RgbImage::from_fn(2, 2, |x, y| Rgb([(x * 255) as u8, (y * 255) as u8, 0]));
        let p = ImagePreprocessor::new(2, Resample::Bicubic);
        let out = p.apply(&DynamicImage::ImageRgb8(img));
        assert_eq!(out, vec![-1.0, 1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]);
    }

    #[test]
    fn resample_names_round_trip() {
        for r in [Resample::Bicubic, Resample::BilinearAntialias] {
            assert_eq!(r.name().parse::<Resample>().unwrap(), r);
        }
        assert!("lanczos".parse::<Resample>().unwrap_err().to_string().contains("bicubic"));
    }
}

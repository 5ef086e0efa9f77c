//! Image decoding to 8-bit RGB, with the conversions the Hugging Face PaliGemma processor applies.
//!
//! Reference: `transformers.image_transforms.convert_to_rgb` (transformers 5.x) and Pillow's `AlphaComposite.c`.
//! * JPEG goes through libjpeg-turbo's decoder (vendored via `mozjpeg`: islow IDCT, fancy upsampling), the
//!   library Pillow links, so the pixels are the ones the HF processor sees. Pure-Rust decoders differ from it by
//!   up to 4 levels on 4:2:0 files (chroma upsampling and YCbCr rounding), which is more than the whole resize
//!   error budget. JPEGs libjpeg refuses (CMYK, some progressive oddities) fall back to the `image` crate.
//! * Images with an alpha channel (RGBA, LA, palette + tRNS) are composited onto opaque white, bit-exactly as
//!   Pillow's `alpha_composite` does, then the alpha is dropped. HF does this; big_vision simply drops alpha.
//! * Grayscale is replicated to three channels; palettes are expanded by the decoder.
//! * 16-bit and float images (common in remote sensing: GeoTIFF exports, 16-bit PNG) are scaled linearly to
//!   8 bits, `round(v * 255 / 65535)`. This deliberately differs from Pillow, whose `I;16 -> RGB` conversion
//!   saturates every value above 255 and would turn a 16-bit scene white.
//! * EXIF orientation is ignored, as PIL and the HF processor ignore it.
use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageReader, RgbImage, RgbaImage};

use crate::DataError;

/// Reads and decodes an image file (JPEG, PNG, TIFF, WebP; the format is sniffed from the bytes, not the name).
pub fn decode_file(path: &Path) -> Result<DynamicImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_bytes(&bytes).map_err(|message| DataError::Decode { path: path.to_path_buf(), message })
}

/// Decodes an in-memory image (for example the bytes stored in a parquet export).
pub fn decode_bytes(bytes: &[u8]) -> Result<DynamicImage, String> {
    if bytes.is_empty() {
        return Err("the file is empty (0 bytes)".into());
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return match decode_jpeg_libjpeg(bytes) {
            Ok(rgb) => Ok(DynamicImage::ImageRgb8(rgb)),
            Err(libjpeg_err) => {
                decode_with_image_crate(bytes).map_err(|e| format!("{libjpeg_err} ({e})"))
            }
        };
    }
    decode_with_image_crate(bytes)
}

fn decode_with_image_crate(bytes: &[u8]) -> Result<DynamicImage, String> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the header: {e}"))?;
    if reader.format().is_none() {
        return Err("unrecognised image format (expected JPEG, PNG, TIFF or WebP)".into());
    }
    reader.decode().map_err(|e| e.to_string())
}

/// Decodes a JPEG to RGB with libjpeg-turbo. libjpeg reports fatal errors by unwinding out of its error
/// handler (without running the panic hook), so the whole decode runs inside `catch_unwind`.
fn decode_jpeg_libjpeg(bytes: &[u8]) -> Result<RgbImage, String> {
    // libjpeg pads a truncated stream with grey and only warns; Pillow refuses such files, and so do we.
    let tail = &bytes[bytes.len().saturating_sub(1 << 16)..];
    if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err("truncated JPEG: no end-of-image marker".into());
    }
    let result = std::panic::catch_unwind(|| -> std::io::Result<RgbImage> {
        let mut started = mozjpeg::Decompress::new_mem(bytes)?.rgb()?;
        let (w, h) = (started.width() as u32, started.height() as u32);
        let pixels = started.read_scanlines::<u8>()?;
        started.finish()?;
        RgbImage::from_raw(w, h, pixels).ok_or_else(|| std::io::Error::other("short scanline data"))
    });
    match result {
        Ok(Ok(img)) => Ok(img),
        Ok(Err(e)) => Err(format!("libjpeg: {e}")),
        Err(payload) => Err(format!(
            "libjpeg: {}",
            payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("corrupt JPEG data")
        )),
    }
}

/// Like [`to_rgb8`], but takes ownership so an image that is already RGB8 (every JPEG) is not copied.
pub fn into_rgb8(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => to_rgb8(&other),
    }
}

/// Converts any decoded image to 8-bit RGB as described in the module header.
pub fn to_rgb8(img: &DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb.clone(),
        other if other.color().has_alpha() => composite_on_white(&other.to_rgba8()),
        // `to_rgb8` replicates luma and rescales 16-bit/float channels to 8 bits with rounding.
        other => other.to_rgb8(),
    }
}

/// Pillow's `Image.alpha_composite(white, img).convert("RGB")` with its 7-bit fixed-point arithmetic.
fn composite_on_white(rgba: &RgbaImage) -> RgbImage {
    const PRECISION_BITS: u32 = 7;
    let shift_div255 = |a: u32| ((a >> 8) + a) >> 8;
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let [r, g, b, a] = src.0.map(u32::from);
        if a == 0 {
            dst.0 = [255, 255, 255];
            continue;
        }
        // Background alpha is 255, so Pillow's `blend` and `outa255` reduce to these two lines.
        let outa255 = a * 255 + 255 * (255 - a);
        let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
        let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
        let mix = |c: u32| {
            (shift_div255(c * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS)) >> PRECISION_BITS)
                as u8
        };
        dst.0 = [mix(r), mix(g), mix(b)];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgba};

    #[test]
    fn opaque_alpha_is_identity_and_transparent_is_white() {
        let img = RgbaImage::from_fn(3, 1, |x, _| match x {
            0 => Rgba([10, 20, 30, 255]),
            1 => Rgba([10, 20, 30, 0]),
            _ => Rgba([0, 0, 0, 128]),
        });
        let rgb = to_rgb8(&DynamicImage::ImageRgba8(img));
        assert_eq!(rgb.get_pixel(0, 0).0, [10, 20, 30]);
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 255, 255]);
        // Black at alpha 128 over white: 255 * (127/255) = 127.
        assert_eq!(rgb.get_pixel(2, 0).0, [127, 127, 127]);
    }

    #[test]
    fn sixteen_bit_gray_scales_linearly() {
        let img: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_raw(4, 1, vec![0, 257, 32896, 65535]).unwrap();
        let rgb = to_rgb8(&DynamicImage::ImageLuma16(img));
        let got: Vec<u8> = rgb.pixels().map(|p| p.0[0]).collect();
        assert_eq!(got, vec![0, 1, 128, 255]);
        assert!(rgb.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
    }

    #[test]
    fn empty_and_garbage_bytes_are_clear_errors() {
        assert!(decode_bytes(&[]).unwrap_err().contains("empty"));
        assert!(decode_bytes(b"definitely not an image").unwrap_err().contains("unrecognised"));
    }
}

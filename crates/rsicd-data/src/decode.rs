//! Image decoding to 8-bit RGB, with the conversions the Hugging Face PaliGemma processor applies.
//!
//! Reference: `transformers.image_transforms.convert_to_rgb` (transformers 5.x) and Pillow's `AlphaComposite.c`.
//! * JPEG goes through libjpeg-turbo's decoder (vendored via `mozjpeg`: islow IDCT, fancy upsampling), the
//!   library Pillow links, so the pixels are the ones the HF processor sees. Pure-Rust decoders differ from it by
//!   up to 4 levels on 4:2:0 files (chroma upsampling and YCbCr rounding), which is more than the whole resize
//!   error budget. JPEGs libjpeg refuses (CMYK, some progressive oddities) fall back to the `image` crate.
//! * Truncated or corrupt files are errors, never padded images. Before decoding, the structure is walked
//!   ([`probe_file`] does only this): a JPEG must reach the end-of-image marker after its last scan, a PNG
//!   must end with `IEND` with every chunk inside the file, TIFF strips/tiles must lie inside the file, a WebP's
//!   RIFF size must fit. During decoding libjpeg's "Premature end of JPEG file" and "Corrupt JPEG data"
//!   warnings (which it would paper over with grey) are fatal, and the fallback decoder is never used for them.
//! * Images above [`max_image_pixels`] (default [`DEFAULT_MAX_IMAGE_PIXELS`], `$PALIGEMMA_MAX_IMAGE_PIXELS`)
//!   are refused from their header, before any pixel buffer is allocated, with their size and the limit.
//! * Images with an alpha channel (RGBA, LA, palette + tRNS) are composited onto opaque white, bit-exactly as
//!   Pillow's `alpha_composite` does, then the alpha is dropped. HF does this; big_vision simply drops alpha.
//! * Grayscale is replicated to three channels; palettes are expanded by the decoder.
//! * 16-bit and float images (common in remote sensing: GeoTIFF exports, 16-bit PNG) are scaled linearly to
//!   8 bits, `round(v * 255 / 65535)`. This deliberately differs from Pillow, whose `I;16 -> RGB` conversion
//!   saturates every value above 255 and would turn a 16-bit scene white.
//! * EXIF orientation is ignored, as PIL and the HF processor ignore it.
use std::io::Cursor;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::OnceLock;

use image::{DynamicImage, ImageFormat, ImageReader, RgbImage, RgbaImage};
use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr, jpeg_std_error, JWRN_JPEG_EOF};

use crate::DataError;

/// Environment variable that raises (or, set to 0, removes) the pixel limit; read once per process.
pub const MAX_IMAGE_PIXELS_ENV: &str = "PALIGEMMA_MAX_IMAGE_PIXELS";
/// Images larger than this are refused before any pixel buffer is allocated: Pillow's
/// `DecompressionBombError` threshold (2 x `Image.MAX_IMAGE_PIXELS`), about 13,377² pixels.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 178_956_970;

/// The pixel limit in force: `$PALIGEMMA_MAX_IMAGE_PIXELS` (0 = no limit), else [`DEFAULT_MAX_IMAGE_PIXELS`].
pub fn max_image_pixels() -> Result<u64, String> {
    static LIMIT: OnceLock<Result<u64, String>> = OnceLock::new();
    LIMIT
        .get_or_init(|| match std::env::var(MAX_IMAGE_PIXELS_ENV) {
            Err(_) => Ok(DEFAULT_MAX_IMAGE_PIXELS),
            Ok(v) => match v.trim().replace('_', "").parse::<u64>() {
                Ok(0) => Ok(u64::MAX),
                Ok(n) => Ok(n),
                Err(_) => Err(format!(
                    "{MAX_IMAGE_PIXELS_ENV}={v:?} is not a whole number of pixels (e.g. 300000000; 0 means no \
                     limit)"
                )),
            },
        })
        .clone()
}

fn check_pixels(width: u32, height: u32) -> Result<(), String> {
    if width == 0 || height == 0 {
        return Err(format!("the header gives an empty image ({width}x{height})"));
    }
    let pixels = u64::from(width) * u64::from(height);
    let limit = max_image_pixels()?;
    if pixels > limit {
        return Err(format!(
            "the image is {width}x{height} = {pixels} pixels, more than the limit of {limit} pixels. If it is \
             meant to be this large, raise the limit with the environment variable \
             {MAX_IMAGE_PIXELS_ENV}={pixels} (0 removes it), or downscale the image first"
        ));
    }
    Ok(())
}

/// What the fast structural check learns about an encoded image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inspected {
    format: ImageFormat,
    width: u32,
    height: u32,
}

/// Reads a file and checks it without decoding pixels: it exists and is not empty, the format is recognised
/// (JPEG, PNG, TIFF, WebP), the header gives the dimensions, the size is within [`max_image_pixels`], and the
/// data is complete: a JPEG's end-of-image marker follows its last scan (found by walking the segments, so a
/// thumbnail's marker does not count), a PNG's chunks all fit and end with `IEND`, a TIFF's strips or tiles
/// lie inside the file, a WebP's RIFF size fits. Returns `(width, height)`. Microseconds per image; the pixels
/// themselves are only checked by a full decode ([`decode_file`]).
pub fn probe_file(path: &Path) -> Result<(u32, u32), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    probe_bytes(&bytes).map_err(|message| DataError::Decode { path: path.to_path_buf(), message })
}

/// [`probe_file`] for an in-memory image (for example the bytes stored in a parquet export).
pub fn probe_bytes(bytes: &[u8]) -> Result<(u32, u32), String> {
    let info = inspect(bytes)?;
    check_pixels(info.width, info.height)?;
    Ok((info.width, info.height))
}

fn inspect(bytes: &[u8]) -> Result<Inspected, String> {
    if bytes.is_empty() {
        return Err("the file is empty (0 bytes)".into());
    }
    let (format, (width, height)) = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let layout = jpeg_layout(bytes)?;
        (ImageFormat::Jpeg, (layout.width, layout.height))
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        (ImageFormat::Png, png_layout(bytes)?)
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        tiff_extents(bytes)?;
        (ImageFormat::Tiff, header_dimensions(bytes, ImageFormat::Tiff)?)
    } else if bytes.starts_with(b"II+\0") || bytes.starts_with(b"MM\0+") {
        // BigTIFF: dimensions only; the decoder reports missing data.
        (ImageFormat::Tiff, header_dimensions(bytes, ImageFormat::Tiff)?)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        let riff = u64::from(u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"))) + 8;
        if riff > bytes.len() as u64 {
            return Err(format!(
                "truncated WebP: the RIFF header announces {riff} bytes, the file has {}",
                bytes.len()
            ));
        }
        (ImageFormat::WebP, header_dimensions(bytes, ImageFormat::WebP)?)
    } else {
        let what = match image::guess_format(bytes) {
            Ok(f) => format!("{f:?} is not supported"),
            Err(_) => "unrecognised image format".to_string(),
        };
        return Err(format!("{what} (expected JPEG, PNG, TIFF or WebP)"));
    };
    Ok(Inspected { format, width, height })
}

fn header_dimensions(bytes: &[u8], format: ImageFormat) -> Result<(u32, u32), String> {
    ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| format!("cannot read the {format:?} header: {e}"))
}

/// Where a JPEG's segments put the frame size and the end-of-image marker.
struct JpegLayout {
    width: u32,
    height: u32,
}

/// Walks a JPEG's segments (skipping each by its length, so markers inside APPn data such as an EXIF
/// thumbnail are never mistaken for the image's own) and its entropy-coded scans, up to the end-of-image
/// marker that follows the last scan. Anything after that marker is ignored (some writers append data).
fn jpeg_layout(b: &[u8]) -> Result<JpegLayout, String> {
    let n = b.len();
    let truncated = |where_: String| {
        format!(
            "truncated JPEG: the file ({n} bytes) ends {where_}, before the end-of-image marker (FFD9); it was \
             cut short (an interrupted download or copy?)"
        )
    };
    let mut i = 2;
    let mut size = None;
    let mut scans = 0usize;
    loop {
        // Bytes other than 0xFF between segments are tolerated, as libjpeg does (it warns and skips them).
        while i < n && b[i] != 0xFF {
            i += 1;
        }
        while i < n && b[i] == 0xFF {
            i += 1;
        }
        if i >= n {
            return Err(truncated(if scans == 0 {
                "before the compressed image data".into()
            } else {
                format!("after scan {scans}")
            }));
        }
        let marker = b[i];
        i += 1;
        match marker {
            0xD9 => {
                if scans == 0 {
                    return Err(format!(
                        "corrupt JPEG: end-of-image marker at byte {} before any image data",
                        i - 2
                    ));
                }
                let (width, height) =
                    size.ok_or("corrupt JPEG: no frame header (SOF marker) before the image data")?;
                return Ok(JpegLayout { width, height });
            }
            0xD8 => {
                return Err(format!(
                    "corrupt JPEG: a second start-of-image marker at byte {}",
                    i - 2
                ))
            }
            // Markers without a length: TEM, RSTn; 0x00 is a stuffed byte outside a scan (garbage, skipped).
            0x00 | 0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        if i + 2 > n {
            return Err(truncated(format!("inside the header of marker FF{marker:02X}")));
        }
        let len = usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
        if len < 2 {
            return Err(format!(
                "corrupt JPEG: marker FF{marker:02X} at byte {} has an invalid length {len}",
                i - 2
            ));
        }
        let end = i + len;
        if end > n {
            return Err(truncated(format!(
                "inside the FF{marker:02X} segment at byte {} ({len} bytes long)",
                i - 2
            )));
        }
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) && len >= 8 {
            let height = u32::from(u16::from_be_bytes([b[i + 3], b[i + 4]]));
            let width = u32::from(u16::from_be_bytes([b[i + 5], b[i + 6]]));
            size = Some((width, height));
        }
        i = end;
        if marker == 0xDA {
            scans += 1;
            // Entropy-coded data: runs until a 0xFF that is not a stuffed 0xFF00, a restart marker or fill.
            loop {
                let Some(p) = b[i..].iter().position(|&x| x == 0xFF) else {
                    return Err(truncated(format!("inside the compressed data of scan {scans}")));
                };
                let j = i + p;
                if j + 1 >= n {
                    return Err(truncated(format!("inside the compressed data of scan {scans}")));
                }
                match b[j + 1] {
                    0x00 | 0xD0..=0xD7 => i = j + 2,
                    0xFF => i = j + 1,
                    _ => {
                        i = j;
                        break;
                    }
                }
            }
        }
    }
}

/// Checks a PNG's chunk sequence: `IHDR` first, every chunk inside the file, image data, `IEND` last.
/// Returns the dimensions from `IHDR`.
fn png_layout(b: &[u8]) -> Result<(u32, u32), String> {
    let n = b.len();
    let be32 = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    if n < 33 {
        return Err(format!("truncated PNG: the file ({n} bytes) ends inside the IHDR header"));
    }
    if &b[12..16] != b"IHDR" {
        return Err("corrupt PNG: the first chunk is not IHDR".into());
    }
    let (width, height) = (be32(16), be32(20));
    let mut i = 8;
    let mut image_data = false;
    loop {
        if i + 8 > n {
            return Err(format!(
                "truncated PNG: the file ({n} bytes) ends after {} chunks, before the IEND chunk; it was cut \
                 short",
                if image_data { "the image data" } else { "the header" }
            ));
        }
        let len = be32(i);
        let kind = String::from_utf8_lossy(&b[i + 4..i + 8]).into_owned();
        if len > 0x7FFF_FFFF {
            return Err(format!(
                "corrupt PNG: chunk {kind:?} at byte {i} has an invalid length {len}"
            ));
        }
        let end = i + 12 + len as usize;
        if end > n {
            return Err(format!(
                "truncated PNG: the file ({n} bytes) ends inside the {kind} chunk at byte {i} ({len} bytes of \
                 data); it was cut short"
            ));
        }
        match kind.as_str() {
            "IDAT" | "fdAT" => image_data = true,
            "IEND" if !image_data => {
                return Err("corrupt PNG: IEND before any image data (IDAT)".into())
            }
            "IEND" => return Ok((width, height)),
            _ => {}
        }
        i = end;
    }
}

/// Checks that a (classic) TIFF's first directory and the strips or tiles it points to lie inside the file.
fn tiff_extents(b: &[u8]) -> Result<(), String> {
    let n = b.len();
    let le = b[0] == b'I';
    let u16_at = |at: usize| {
        let v: [u8; 2] = b[at..at + 2].try_into().expect("2 bytes");
        if le {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        }
    };
    let u32_at = |at: usize| {
        let v: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
        if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    let truncated = |what: String| format!("truncated TIFF: {what}, but the file has {n} bytes");
    if n < 8 {
        return Err(truncated("the header needs 8 bytes".into()));
    }
    let ifd = u32_at(4) as usize;
    if ifd + 2 > n {
        return Err(truncated(format!("the first directory is at byte {ifd}")));
    }
    let entries = usize::from(u16_at(ifd));
    if ifd + 2 + 12 * entries > n {
        return Err(truncated(format!(
            "the first directory (byte {ifd}, {entries} entries) ends at byte {}",
            ifd + 2 + 12 * entries
        )));
    }
    // Values of one entry: inline when they fit in 4 bytes, else at the offset the entry gives.
    let values = |e: usize| -> Result<Vec<u64>, String> {
        let (kind, count) = (u16_at(e + 2), u32_at(e + 4) as usize);
        let width = match kind {
            3 => 2,
            4 => 4,
            _ => return Ok(Vec::new()),
        };
        let at = if width * count <= 4 { e + 8 } else { u32_at(e + 8) as usize };
        if at.saturating_add(width * count) > n {
            return Err(truncated(format!("tag {} holds {count} values at byte {at}", u16_at(e))));
        }
        Ok((0..count)
            .map(|k| {
                if width == 2 {
                    u64::from(u16_at(at + 2 * k))
                } else {
                    u64::from(u32_at(at + 4 * k))
                }
            })
            .collect())
    };
    let mut tags: std::collections::HashMap<u16, Vec<u64>> = Default::default();
    for k in 0..entries {
        let e = ifd + 2 + 12 * k;
        let tag = u16_at(e);
        if matches!(tag, 273 | 279 | 324 | 325) {
            tags.insert(tag, values(e)?);
        }
    }
    for (offsets, counts, what) in [(273, 279, "strip"), (324, 325, "tile")] {
        if let (Some(starts), Some(lens)) = (tags.get(&offsets), tags.get(&counts)) {
            for (k, (&o, &c)) in starts.iter().zip(lens).enumerate() {
                if o + c > n as u64 {
                    return Err(truncated(format!(
                        "image data ({what} {} of {}) ends at byte {}",
                        k + 1,
                        starts.len(),
                        o + c
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Reads and decodes an image file (JPEG, PNG, TIFF, WebP; the format is sniffed from the bytes, not the name).
pub fn decode_file(path: &Path) -> Result<DynamicImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_bytes(&bytes).map_err(|message| DataError::Decode { path: path.to_path_buf(), message })
}

/// Decodes an in-memory image (for example the bytes stored in a parquet export). Truncated or corrupt data is
/// an error, never a padded image: the structure is checked first (see [`probe_file`]), then the decoder's own
/// complaints are fatal.
pub fn decode_bytes(bytes: &[u8]) -> Result<DynamicImage, String> {
    let info = inspect(bytes)?;
    check_pixels(info.width, info.height)?;
    if info.format == ImageFormat::Jpeg {
        return match decode_jpeg_libjpeg(bytes) {
            Ok(rgb) => Ok(DynamicImage::ImageRgb8(rgb)),
            // Damaged data is final; only what libjpeg cannot do (CMYK to RGB, …) goes to the other decoder,
            // on data whose structure has been checked to be complete.
            Err(LibjpegError::Damaged(e)) => Err(e),
            Err(LibjpegError::Refused(e)) => decode_with_image_crate(bytes, info.format)
                .map_err(|other| format!("{e} (the fallback decoder: {other})")),
        };
    }
    decode_with_image_crate(bytes, info.format)
}

fn decode_with_image_crate(bytes: &[u8], format: ImageFormat) -> Result<DynamicImage, String> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    // The pixel count was checked against `max_image_pixels`; allow the memory such an image needs (up to 16
    // bytes per pixel for 32-bit float RGBA) instead of the `image` crate's fixed 512 MiB.
    let mut limits = image::Limits::default();
    let pixels = max_image_pixels()?;
    limits.max_alloc = Some(pixels.saturating_mul(16).max(512 << 20));
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => format!(
            "decoding needs more memory than allowed ({l}); raise the limit with {MAX_IMAGE_PIXELS_ENV}=<pixels>"
        ),
        other => other.to_string(),
    })
}

enum LibjpegError {
    /// Truncated or corrupt data (libjpeg's "Premature end of JPEG file" and "Corrupt JPEG data" warnings,
    /// which it would otherwise paper over with grey).
    Damaged(String),
    /// Something libjpeg does not do (e.g. a colour conversion); another decoder may.
    Refused(String),
}

/// Unwinding payload of the error handlers below.
struct JpegFailure {
    damaged: bool,
    message: String,
}

fn libjpeg_message(cinfo: &mut jpeg_common_struct) -> String {
    // SAFETY: `err` is the error manager libjpeg was created with (ours, from `jpeg_std_error`), whose
    // `format_message` writes at most JMSG_LENGTH_MAX (200) bytes, NUL-terminated, into the buffer.
    unsafe {
        let Some(format) = cinfo.err.as_ref().and_then(|e| e.format_message) else {
            return "unknown libjpeg error".into();
        };
        let format: unsafe extern "C-unwind" fn(&mut jpeg_common_struct, *mut u8) =
            std::mem::transmute::<
                unsafe extern "C-unwind" fn(&mut jpeg_common_struct, &[u8; 80]),
                unsafe extern "C-unwind" fn(&mut jpeg_common_struct, *mut u8),
            >(format);
        let mut buf = [0u8; 256];
        format(cinfo, buf.as_mut_ptr());
        let text = buf.split(|&c| c == 0).next().unwrap_or_default();
        String::from_utf8_lossy(text).into_owned()
    }
}

extern "C-unwind" fn libjpeg_error_exit(cinfo: &mut jpeg_common_struct) {
    let message = libjpeg_message(cinfo);
    std::panic::resume_unwind(Box::new(JpegFailure { damaged: false, message }));
}

/// libjpeg reports truncation and corrupt entropy data as warnings and carries on with grey or garbage
/// pixels; those warnings end the decode here. Harmless ones (extraneous bytes between markers, an unknown
/// JFIF revision, a bad ICC marker, an inconsistent progression) are ignored, as Pillow ignores them.
extern "C-unwind" fn libjpeg_emit_message(cinfo: &mut jpeg_common_struct, level: c_int) {
    if level >= 0 {
        return; // trace messages
    }
    // SAFETY: `err` points at our error manager for the whole life of the decompressor.
    let code = unsafe { cinfo.err.as_ref().map_or(0, |e| e.msg_code) };
    let message = libjpeg_message(cinfo);
    let damaged = code == JWRN_JPEG_EOF
        || (message.starts_with("Corrupt JPEG data")
            && !message.contains("extraneous bytes")
            && !message.contains("ICC"));
    if damaged {
        std::panic::resume_unwind(Box::new(JpegFailure { damaged: true, message }));
    }
}

/// Decodes a JPEG to RGB with libjpeg-turbo. libjpeg reports fatal errors by unwinding out of its error
/// handler (without running the panic hook), so the whole decode runs inside `catch_unwind`.
fn decode_jpeg_libjpeg(bytes: &[u8]) -> Result<RgbImage, LibjpegError> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: a zeroed `jpeg_error_mgr` is what `jpeg_std_error` expects to fill in.
        let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
        unsafe { jpeg_std_error(&mut err) };
        err.error_exit = Some(libjpeg_error_exit);
        err.emit_message = Some(libjpeg_emit_message);
        let run = || -> std::io::Result<RgbImage> {
            let mut started =
                mozjpeg::Decompress::builder().with_err(err).from_mem(bytes)?.rgb()?;
            let (w, h) = (started.width() as u32, started.height() as u32);
            let pixels = started.read_scanlines::<u8>()?;
            started.finish()?;
            RgbImage::from_raw(w, h, pixels)
                .ok_or_else(|| std::io::Error::other("short scanline data"))
        };
        run()
    }));
    match result {
        Ok(Ok(img)) => Ok(img),
        Ok(Err(e)) => Err(LibjpegError::Damaged(format!("libjpeg: {e}"))),
        Err(payload) => Err(match payload.downcast::<JpegFailure>() {
            Ok(f) if f.damaged && f.message.starts_with("Premature end") => {
                LibjpegError::Damaged(format!("truncated JPEG: libjpeg: {}", f.message))
            }
            Ok(f) if f.damaged => LibjpegError::Damaged(format!("libjpeg: {}", f.message)),
            Ok(f) => LibjpegError::Refused(format!("libjpeg: {}", f.message)),
            Err(other) => LibjpegError::Refused(format!(
                "libjpeg: {}",
                other
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| other.downcast_ref::<&str>().copied())
                    .unwrap_or("corrupt JPEG data")
            )),
        }),
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

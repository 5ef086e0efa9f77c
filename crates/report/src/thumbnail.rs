//! Gallery thumbnails: an image file (JPEG, PNG, TIFF, WebP) scaled to fit a square, as an embeddable PNG.

use std::path::Path;

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 160;

/// Decodes `path` and returns a PNG of at most `side`×`side` pixels, aspect ratio kept; the error says why not.
pub fn png_thumbnail(path: &Path, side: u32) -> Result<Vec<u8>, String> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let img = reader.decode().map_err(|e| e.to_string())?;
    let small = if img.width() > side || img.height() > side {
        img.resize(side, side, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let rgb = small.to_rgb8();
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        rgb.as_raw(),
        rgb.width(),
        rgb.height(),
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| e.to_string())?;
    Ok(png)
}

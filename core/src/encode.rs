//! Lossy WebP through libwebp. Only pixels go in, so no metadata can reach the output.

use image::DynamicImage;

use crate::error::ProcessError;

/// Quality of the display image (the seeds' `webp({ quality: 85 })`).
pub const DISPLAY_QUALITY: f32 = 85.0;
/// Quality of the thumbnail (the seeds' `webp({ quality: 80 })`).
pub const THUMBNAIL_QUALITY: f32 = 80.0;

/// Encode 8-bit RGB or RGBA pixels as lossy WebP (alpha, when present, is kept).
pub(crate) fn webp_lossy(image: &DynamicImage, quality: f32) -> Result<Vec<u8>, ProcessError> {
    let (width, height) = (image.width(), image.height());
    let encoder = match image {
        DynamicImage::ImageRgb8(buffer) => webp::Encoder::from_rgb(buffer.as_raw(), width, height),
        DynamicImage::ImageRgba8(buffer) => {
            webp::Encoder::from_rgba(buffer.as_raw(), width, height)
        }
        other => {
            return Err(ProcessError::Internal {
                stage: "encoding",
                reason: format!("unexpected pixel type {:?}", other.color()),
            });
        }
    };
    let encoded =
        encoder
            .encode_simple(false, quality)
            .map_err(|e| ProcessError::EncodeFailed {
                reason: format!("{e:?}"),
            })?;
    Ok(encoded.to_vec())
}

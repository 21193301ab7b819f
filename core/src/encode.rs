//! Lossy WebP through libwebp. Only pixels go in, so no metadata can reach the output.

use image::DynamicImage;

use crate::error::ProcessError;

/// Quality of the display image (the seeds' `webp({ quality: 85 })`).
pub const DISPLAY_QUALITY: f32 = 85.0;
/// Quality of the thumbnail (the seeds' `webp({ quality: 80 })`).
pub const THUMBNAIL_QUALITY: f32 = 80.0;

/// libwebp's effort (`method`), 0 (fastest) to 6: 4, sharp's default. Measured
/// (docs/measurements/2026-12-03-webp-effort.md): 3 is no faster; 2 encodes 2.4x faster but
/// its images score lower (hybrid SSIM -0.005 median against the reference downscale) and
/// are 3 % larger, and a faster upload is never bought with worse images.
const METHOD: i32 = 4;

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
    let failed = |reason: String| ProcessError::EncodeFailed { reason };
    let mut config = webp::WebPConfig::new().map_err(|()| failed("no libwebp config".into()))?;
    config.quality = quality;
    config.method = METHOD;
    let encoded = encoder
        .encode_advanced(&config)
        .map_err(|e| failed(format!("{e:?}")))?;
    Ok(encoded.to_vec())
}

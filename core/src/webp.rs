//! Still WebP images decoded by libwebp: the library the encoder already links
//! (`libwebp-sys`, 1.6.0): about twice as fast as image-webp on the corpus's lossy files,
//! 18 % fewer instructions on a lossless one, the same pixels
//! (docs/measurements/2026-12-04-webp-decode.md). image-webp still reads the headers
//! (sides, orientation, ICC, frame count) and decodes animations' first frames.
//!
//! libwebp's decoder output does not depend on the CPU: its SSE2 paths and its portable C
//! (what wasm runs) give the same pixels, which the cross-target parity tests check.

// libwebp is C: calling it is unsafe. Confined to this module and `encode.rs`; every block
// says why it holds.
#![allow(unsafe_code)]

use image::{DynamicImage, RgbImage, RgbaImage};
use libwebp_sys as sys;

use crate::decode::corrupt;
use crate::error::ProcessError;
use crate::sniff::Format;

/// `WebPBitstreamFeatures::format` of a lossless (VP8L) file; 1 is lossy, 0 mixed.
const LOSSLESS: std::ffi::c_int = 2;

/// Decode a still (not animated) WebP whose header `open` read and checked as
/// `width`×`height`, into 8-bit RGB, or RGBA when the file says it has alpha. `cap` bounds
/// the output buffer and libwebp's own working memory, counted before anything is
/// allocated.
pub(crate) fn decode_still(
    bytes: &[u8],
    width: u32,
    height: u32,
    cap: u64,
) -> Result<DynamicImage, ProcessError> {
    let mut config = sys::WebPDecoderConfig::new()
        .map_err(|()| internal("libwebp refused its own decoder configuration"))?;
    // SAFETY: `bytes` is a live slice of `bytes.len()` bytes; `config.input` is a writable
    // WebPBitstreamFeatures. libwebp only reads the headers and keeps no pointer.
    let status = unsafe { sys::WebPGetFeatures(bytes.as_ptr(), bytes.len(), &mut config.input) };
    check(status, cap)?;
    let features = config.input;
    if features.has_animation != 0 {
        return Err(internal("an animated WebP reached the still decoder"));
    }
    if i64::from(features.width) != i64::from(width)
        || i64::from(features.height) != i64::from(height)
    {
        return Err(corrupt(
            Format::Webp,
            format!(
                "the bitstream is {}×{}, the container says {width}×{height}",
                features.width, features.height
            ),
        ));
    }
    let has_alpha = features.has_alpha != 0;
    let channels: u64 = if has_alpha { 4 } else { 3 };
    let pixels = u64::from(width) * u64::from(height);
    let output = pixels * channels;
    // What libwebp allocates besides our buffer: a lossless image is decoded whole into
    // 32-bit ARGB first; a lossy one needs a few macroblock rows, plus an 8-bit alpha
    // plane when it has one.
    let working = match features.format {
        LOSSLESS => pixels * 4,
        _ if has_alpha => pixels,
        _ => 0,
    };
    if output + working > cap {
        return Err(ProcessError::MemoryLimit { limit: cap });
    }
    let too_large = || internal(format!("{width}×{height} does not fit in memory"));
    let output_len = usize::try_from(output).map_err(|_| too_large())?;
    let stride = usize::try_from(u64::from(width) * channels)
        .ok()
        .and_then(|s| std::ffi::c_int::try_from(s).ok())
        .ok_or_else(too_large)?;
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(output_len)
        .map_err(|_| ProcessError::MemoryLimit { limit: cap })?;
    buffer.resize(output_len, 0u8);

    config.output.colorspace = if has_alpha {
        sys::WEBP_CSP_MODE::MODE_RGBA
    } else {
        sys::WEBP_CSP_MODE::MODE_RGB
    };
    config.output.is_external_memory = 1;
    config.output.u.RGBA = sys::WebPRGBABuffer {
        rgba: buffer.as_mut_ptr(),
        stride,
        size: buffer.len(),
    };
    // SAFETY: `bytes` is live for the call. The output points at `buffer`, which holds
    // `height` rows of `stride` bytes (libwebp checks that `size` covers them, and writes
    // nothing past it) and outlives the call. With external memory libwebp allocates no
    // output of its own; its working memory is freed before it returns.
    let status = unsafe { sys::WebPDecode(bytes.as_ptr(), bytes.len(), &mut config) };
    // SAFETY: `config.output` was initialised by WebPDecoderConfig::new; for external
    // memory this frees nothing of ours, only what libwebp may have attached to it.
    unsafe { sys::WebPFreeDecBuffer(&mut config.output) };
    check(status, cap)?;
    let image = if has_alpha {
        RgbaImage::from_raw(width, height, buffer).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(width, height, buffer).map(DynamicImage::ImageRgb8)
    };
    image.ok_or_else(|| internal("the decoded buffer does not match the header"))
}

/// libwebp's status as the core's error.
fn check(status: sys::VP8StatusCode, cap: u64) -> Result<(), ProcessError> {
    use sys::VP8StatusCode as S;
    match status {
        S::VP8_STATUS_OK => Ok(()),
        S::VP8_STATUS_NOT_ENOUGH_DATA => Err(corrupt(Format::Webp, "the file is truncated")),
        S::VP8_STATUS_UNSUPPORTED_FEATURE => Err(ProcessError::UnsupportedFeature {
            format: Format::Webp,
            reason: "libwebp does not support a feature this file uses".to_owned(),
        }),
        // An allocation failed (in the sandbox, its memory cap) or passed libwebp's own limit.
        S::VP8_STATUS_OUT_OF_MEMORY => Err(ProcessError::MemoryLimit { limit: cap }),
        other => Err(corrupt(Format::Webp, format!("libwebp: {other:?}"))),
    }
}

fn internal(reason: impl Into<String>) -> ProcessError {
    ProcessError::Internal {
        stage: "decoding",
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::{ImageFormat, Rgb, Rgba};

    use super::*;

    fn lossless(image: &DynamicImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::WebP)
            .unwrap();
        bytes
    }

    #[test]
    fn lossless_pixels_come_back_exactly_with_and_without_alpha() {
        let rgb = DynamicImage::ImageRgb8(RgbImage::from_fn(67, 41, |x, y| {
            Rgb([(x * 3) as u8, (y * 5) as u8, (x ^ y) as u8])
        }));
        let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(67, 41, |x, y| {
            Rgba([(x * 3) as u8, (y * 5) as u8, 77, (x * y) as u8])
        }));
        for source in [rgb, rgba] {
            let decoded = decode_still(&lossless(&source), 67, 41, u64::MAX).unwrap();
            assert_eq!(decoded, source);
        }
    }

    #[test]
    fn the_cap_covers_output_and_working_memory_before_anything_is_allocated() {
        let rgba = DynamicImage::ImageRgba8(RgbaImage::from_pixel(100, 100, Rgba([1, 2, 3, 4])));
        let bytes = lossless(&rgba);
        // 40,000 B of RGBA out plus 40,000 B of ARGB inside libwebp.
        assert!(decode_still(&bytes, 100, 100, 80_000).is_ok());
        let refused = decode_still(&bytes, 100, 100, 79_999).unwrap_err();
        assert_eq!(refused.code(), "memory_limit");
    }

    #[test]
    fn truncated_and_mislabelled_files_are_corrupt() {
        let rgb = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb([9, 99, 199])));
        let bytes = lossless(&rgb);
        let cut = decode_still(&bytes[..bytes.len() / 2], 64, 64, u64::MAX).unwrap_err();
        assert_eq!(cut.code(), "corrupt_image");
        let lying = decode_still(&bytes, 64, 65, u64::MAX).unwrap_err();
        assert_eq!(lying.code(), "corrupt_image");
    }
}

//! Lossy WebP through libwebp (the 1.6.0 that libwebp-sys vendors and builds). Only pixels go
//! in, so no metadata can reach the output.
//!
//! With `webp.rs` (the decoder), the crate's only `unsafe`: a thin safe wrapper around
//! libwebp's advanced encoding API (config, picture, memory writer). Each libwebp object is
//! owned by a Rust value whose `Drop` frees it, so every early return releases what was
//! allocated.

// libwebp is C: calling it is unsafe. Confined to this module and `webp.rs`; every block
// says why it holds.
#![allow(unsafe_code)]

use std::ffi::c_int;

use image::DynamicImage;
use libwebp_sys as sys;

use crate::error::ProcessError;

/// Quality of the display image (the seeds' `webp({ quality: 85 })`).
pub const DISPLAY_QUALITY: f32 = 85.0;
/// Quality of the thumbnail (the seeds' `webp({ quality: 80 })`).
pub const THUMBNAIL_QUALITY: f32 = 80.0;

/// libwebp's effort (`method`), 0 (fastest) to 6: 4, sharp's default. Measured
/// (docs/measurements/2026-12-03-webp-effort.md): 3 is no faster; 2 encodes 2.4x faster but
/// its images score lower (hybrid SSIM -0.005 median against the reference downscale) and
/// are 3 % larger, and a faster upload is never bought with worse images.
const METHOD: c_int = 4;

/// Encode 8-bit RGB or RGBA pixels as lossy WebP (alpha, when present, is kept).
pub(crate) fn webp_lossy(image: &DynamicImage, quality: f32) -> Result<Vec<u8>, ProcessError> {
    let (layout, pixels) = match image {
        DynamicImage::ImageRgb8(buffer) => (Layout::Rgb, buffer.as_raw().as_slice()),
        DynamicImage::ImageRgba8(buffer) => (Layout::Rgba, buffer.as_raw().as_slice()),
        other => {
            return Err(ProcessError::Internal {
                stage: "encoding",
                reason: format!("unexpected pixel type {:?}", other.color()),
            });
        }
    };
    let config = Config::new(quality)?;
    let mut picture = Picture::import(pixels, image.width(), image.height(), layout)?;
    picture.encode(&config)
}

fn failed(reason: impl Into<String>) -> ProcessError {
    ProcessError::EncodeFailed {
        reason: reason.into(),
    }
}

/// How the pixels handed to libwebp are laid out: packed rows, 8 bits per channel.
#[derive(Debug, Clone, Copy)]
enum Layout {
    Rgb,
    Rgba,
}

impl Layout {
    fn channels(self) -> usize {
        match self {
            Layout::Rgb => 3,
            Layout::Rgba => 4,
        }
    }
}

/// A validated `WebPConfig`: libwebp's defaults, then our quality and method.
struct Config(sys::WebPConfig);

impl Config {
    fn new(quality: f32) -> Result<Self, ProcessError> {
        // SAFETY: all-zero is a valid WebPConfig: integers, floats, padding and an enum
        // (`image_hint`) whose 0 is `WEBP_HINT_DEFAULT`. libwebp overwrites it next.
        let mut config: sys::WebPConfig = unsafe { std::mem::zeroed() };
        // SAFETY: `config` is a live, writable WebPConfig; the ABI version is the one of the
        // header these bindings were generated from, which libwebp checks.
        let initialised = unsafe {
            sys::WebPConfigInitInternal(
                &mut config,
                sys::WebPPreset::WEBP_PRESET_DEFAULT,
                quality,
                sys::WEBP_ENCODER_ABI_VERSION as c_int,
            )
        };
        if initialised == 0 {
            return Err(failed(
                "libwebp refused its own configuration (ABI mismatch)",
            ));
        }
        config.quality = quality;
        config.method = METHOD;
        // SAFETY: `config` was initialised by libwebp above; this only reads it.
        if unsafe { sys::WebPValidateConfig(&config) } == 0 {
            return Err(failed(format!(
                "invalid libwebp configuration (quality {quality})"
            )));
        }
        Ok(Self(config))
    }
}

/// A `WebPPicture` holding imported pixels, freed (`WebPPictureFree`) on drop.
struct Picture(sys::WebPPicture);

impl Picture {
    /// Copy `pixels` (`height` packed rows of `width` × channels bytes) into a new picture.
    fn import(
        pixels: &[u8],
        width: u32,
        height: u32,
        layout: Layout,
    ) -> Result<Self, ProcessError> {
        let row = usize::try_from(width)
            .ok()
            .and_then(|w| w.checked_mul(layout.channels()));
        let total = row.and_then(|r| r.checked_mul(usize::try_from(height).ok()?));
        let (Some(row), Some(total)) = (row, total) else {
            return Err(failed(format!("{width}×{height} does not fit in memory")));
        };
        // libwebp reads exactly `height` rows of `stride` bytes from the pointer it is given:
        // the buffer must be that long, or it would read past it.
        if pixels.len() != total {
            return Err(ProcessError::Internal {
                stage: "encoding",
                reason: format!(
                    "{} pixel bytes for a {width}×{height} {layout:?} image",
                    pixels.len()
                ),
            });
        }
        let too_large = || failed(format!("{width}×{height} is too large for libwebp"));
        let width = c_int::try_from(width).map_err(|_| too_large())?;
        let height = c_int::try_from(height).map_err(|_| too_large())?;
        let stride = c_int::try_from(row).map_err(|_| too_large())?;

        // SAFETY: all-zero is a valid WebPPicture (and what WebPPictureInitInternal starts
        // from): null pointers, `None` for the writer and the progress hook, and enums whose 0 is a variant
        // (`WEBP_YUV420`, `VP8_ENC_OK`).
        let mut picture: sys::WebPPicture = unsafe { std::mem::zeroed() };
        // SAFETY: `picture` is a live, writable WebPPicture; the ABI version is the header's.
        let initialised = unsafe {
            sys::WebPPictureInitInternal(&mut picture, sys::WEBP_ENCODER_ABI_VERSION as c_int)
        };
        if initialised == 0 {
            return Err(failed("libwebp refused its own picture (ABI mismatch)"));
        }
        // Import straight to YUV 4:2:0 (sharp/libvips does the same): the same conversion
        // WebPEncode would run on an ARGB copy, without the copy (4 bytes a pixel) or its
        // pass over the image (docs/measurements/2026-12-04-webp-decode.md).
        picture.use_argb = 0;
        picture.width = width;
        picture.height = height;
        // From here `picture` may own libwebp memory: wrap it first so every path frees it.
        let mut picture = Self(picture);
        // SAFETY: `pixels` holds `height` rows of `stride` bytes (checked above) and outlives
        // the call; libwebp copies them into memory `picture` owns and keeps no pointer.
        let imported = unsafe {
            match layout {
                Layout::Rgb => sys::WebPPictureImportRGB(&mut picture.0, pixels.as_ptr(), stride),
                Layout::Rgba => sys::WebPPictureImportRGBA(&mut picture.0, pixels.as_ptr(), stride),
            }
        };
        if imported == 0 {
            return Err(failed(format!(
                "importing {width}×{height} pixels: {:?}",
                picture.0.error_code
            )));
        }
        Ok(picture)
    }

    /// Encode with `config` into memory, returned as a Rust vector.
    fn encode(&mut self, config: &Config) -> Result<Vec<u8>, ProcessError> {
        let mut output = MemoryWriter::new();
        self.0.writer = Some(sys::WebPMemoryWrite);
        self.0.custom_ptr = (&raw mut output.0).cast();
        // SAFETY: `config` is validated and `self.0` holds imported pixels. The writer
        // appends to `output`, which stays in place (borrowed here) for the whole call.
        let encoded = unsafe { sys::WebPEncode(&config.0, &mut self.0) };
        // Nothing may keep a pointer to `output` once this function returns.
        self.0.writer = None;
        self.0.custom_ptr = std::ptr::null_mut();
        if encoded == 0 {
            return Err(failed(format!("{:?}", self.0.error_code)));
        }
        Ok(output.as_slice().to_vec())
    }
}

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: `self.0` was initialised by WebPPictureInitInternal; freeing releases what
        // libwebp allocated for it (and is a no-op for what it did not).
        unsafe { sys::WebPPictureFree(&mut self.0) }
    }
}

/// libwebp's growable output buffer, freed (`WebPMemoryWriterClear`) on drop.
struct MemoryWriter(sys::WebPMemoryWriter);

impl MemoryWriter {
    fn new() -> Self {
        // SAFETY: all-zero is a valid WebPMemoryWriter (a null pointer, sizes, padding).
        let mut writer: sys::WebPMemoryWriter = unsafe { std::mem::zeroed() };
        // SAFETY: `writer` is a live, writable WebPMemoryWriter; this sets it empty.
        unsafe { sys::WebPMemoryWriterInit(&mut writer) };
        Self(writer)
    }

    fn as_slice(&self) -> &[u8] {
        if self.0.mem.is_null() {
            return &[];
        }
        // SAFETY: libwebp's writer keeps `mem` pointing at `size` initialised bytes it
        // allocated; they live until `Drop` clears the writer, after this borrow ends.
        unsafe { std::slice::from_raw_parts(self.0.mem, self.0.size) }
    }
}

impl Drop for MemoryWriter {
    fn drop(&mut self) {
        // SAFETY: `self.0` was initialised by WebPMemoryWriterInit; this frees its buffer.
        unsafe { sys::WebPMemoryWriterClear(&mut self.0) }
    }
}

#[cfg(test)]
mod tests {
    use image::{RgbImage, RgbaImage};

    use super::*;

    #[test]
    fn rgb_and_rgba_give_lossy_webp() {
        let rgb = DynamicImage::ImageRgb8(RgbImage::from_fn(37, 21, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 11) as u8, 90])
        }));
        let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(37, 21, |x, y| {
            image::Rgba([(x * 7) as u8, (y * 11) as u8, 90, (x * 6) as u8])
        }));
        for (image, alpha) in [(rgb, false), (rgba, true)] {
            let bytes = webp_lossy(&image, DISPLAY_QUALITY).unwrap();
            assert_eq!(&bytes[..4], b"RIFF");
            assert_eq!(&bytes[8..12], b"WEBP");
            // Lossy with alpha is VP8X + ALPH + VP8; without, a plain VP8 chunk.
            let first_chunk = if alpha { b"VP8X" } else { b"VP8 " };
            assert_eq!(&bytes[12..16], first_chunk);
        }
    }

    #[test]
    fn a_buffer_of_the_wrong_length_is_refused_not_read() {
        let error = Picture::import(&[0; 11], 2, 2, Layout::Rgb).err().unwrap();
        assert_eq!(error.code(), "internal");
    }

    #[test]
    fn sides_libwebp_cannot_take_are_encode_failures() {
        // 20000 exceeds libwebp's 16383 limit: the import takes it, WebPEncode refuses it.
        let wide = DynamicImage::ImageRgb8(RgbImage::new(20_000, 1));
        let error = webp_lossy(&wide, THUMBNAIL_QUALITY).unwrap_err();
        assert_eq!(error.code(), "encode_failed");
    }
}

//! `imgsvc-core`: the whole image pipeline as pure functions. Bytes in, bytes and facts out.
//!
//! No I/O, threads, clock, environment or globals: hosts (the service, the CLI, the browser
//! package, the wasm sandbox) move bytes; every decision is made here, identically everywhere.
//!
//! ```no_run
//! let bytes = std::fs::read("photo.jpg").unwrap();
//! let processed = imgsvc_core::process(&bytes, &imgsvc_core::Policy::default()).unwrap();
//! assert!(processed.display.width <= 2048 && processed.thumbnail.width == 400);
//! ```

mod color;
mod decode;
mod encode;
mod error;
pub mod geometry;
mod policy;
mod resize;
mod sniff;

use std::borrow::Cow;

use image::DynamicImage;
use image::metadata::Orientation;
use serde::Serialize;

pub use encode::{DISPLAY_QUALITY, THUMBNAIL_QUALITY};
pub use error::ProcessError;
pub use geometry::{DISPLAY_MAX_SIDE, THUMBNAIL_SIDE};
pub use policy::Policy;
pub use sniff::{Format, sniff};

/// MIME type of every output.
pub const OUTPUT_MIME: &str = "image/webp";

/// Side of the image the ThumbHash is computed from (the algorithm's maximum is 100).
const THUMBHASH_SIDE: u32 = 100;

/// What `probe` learns from the headers alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub format: Format,
    /// As stored, before orientation.
    pub width: u32,
    pub height: u32,
    /// EXIF orientation, 1–8 (1 when absent or invalid).
    pub orientation: u8,
    /// Number of frames (1 for still images).
    pub frames: u32,
}

/// Facts about the uploaded image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFacts {
    pub format: Format,
    pub bytes: u64,
    /// As stored, before orientation.
    pub width: u32,
    pub height: u32,
    /// After applying the EXIF orientation: what a viewer sees.
    pub oriented_width: u32,
    pub oriented_height: u32,
    /// The EXIF orientation that was applied, 1–8 (1 = none).
    pub orientation: u8,
    /// Frames in the file; only the first is used.
    pub frames: u32,
    /// Whether any pixel is not fully opaque (and so the outputs carry alpha).
    pub has_alpha: bool,
    /// Whether an embedded ICC profile or PNG cICP was converted to sRGB.
    pub converted_to_srgb: bool,
}

/// One encoded output.
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The WebP file.
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

impl Encoded {
    pub fn mime(&self) -> &'static str {
        OUTPUT_MIME
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoded")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Everything one upload produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub source: SourceFacts,
    /// Fits inside 2048×2048, never enlarged, WebP q85.
    pub display: Encoded,
    /// 400×400 centre cover crop, WebP q80.
    pub thumbnail: Encoded,
    /// ThumbHash of the thumbnail: a ~25-byte blurred placeholder.
    pub thumbhash: Vec<u8>,
}

/// Read format, dimensions, orientation and frame count from the headers. Allocates no
/// pixel buffer; refuses what `process` would refuse for its format alone.
pub fn probe(bytes: &[u8]) -> Result<Probe, ProcessError> {
    let format = supported_format(bytes)?;
    let header = decode::open(bytes, format, u32::MAX)?.header;
    Ok(Probe {
        format,
        width: header.width,
        height: header.height,
        orientation: header.orientation.to_exif(),
        frames: header.frames,
    })
}

/// The upload pipeline: sniff, check limits, decode once, orient, convert to sRGB, make the
/// display image and the thumbnail, encode both, and compute the ThumbHash.
pub fn process(bytes: &[u8], policy: &Policy) -> Result<Processed, ProcessError> {
    let input_len = bytes.len() as u64;
    if input_len > policy.max_input_bytes {
        return Err(ProcessError::TooLarge {
            actual: input_len,
            limit: policy.max_input_bytes,
        });
    }
    let format = supported_format(bytes)?;
    let open = decode::open(bytes, format, policy.max_frames)?;
    let (width, height, frames) = (open.header.width, open.header.height, open.header.frames);
    decode::check_dimensions(format, width, height, policy)?;
    if frames > policy.max_frames {
        return Err(ProcessError::TooManyFrames {
            limit: policy.max_frames,
        });
    }
    let orientation = open.header.orientation;
    // PNG's cICP, when present, overrides any ICC profile (PNG third edition, 4.3).
    let to_srgb = match (open.header.cicp, &open.header.icc_profile) {
        (Some(cicp), _) => color::ToSrgb::from_cicp(cicp),
        (None, Some(icc)) => color::ToSrgb::from_icc(icc),
        (None, None) => None,
    };
    let source = into_rgb_or_rgba(open.decode(policy)?);
    let has_alpha = matches!(source, DynamicImage::ImageRgba8(_));

    let swaps_axes = swaps_axes(orientation);
    let (oriented_width, oriented_height) = if swaps_axes {
        (height, width)
    } else {
        (width, height)
    };
    let (display_width, display_height) =
        geometry::fit_inside(oriented_width, oriented_height, DISPLAY_MAX_SIDE);
    let downscaled = (display_width, display_height) != (oriented_width, oriented_height);

    // The thumbnail comes from the display pixels whenever its crop there is still at least
    // 400 px (then nothing is lost); only extreme panoramas go back to the full source,
    // which is otherwise freed as soon as the display image exists.
    let needs_source = display_width.min(display_height) < THUMBNAIL_SIDE;

    // Resize before rotating: the same pixels, a much smaller buffer to rotate.
    let (mut display, source) = if downscaled {
        let (w, h) = if swaps_axes {
            (display_height, display_width)
        } else {
            (display_width, display_height)
        };
        (
            resize::resample(&source, resize::whole(&source), w, h)?,
            Some(source).filter(|_| needs_source),
        )
    } else {
        (source, None)
    };
    display.apply_orientation(orientation);
    if let Some(transform) = &to_srgb {
        transform.apply(&mut display)?;
    }

    let thumbnail_base = match source {
        Some(mut full) => {
            full.apply_orientation(orientation);
            if let Some(transform) = &to_srgb {
                transform.apply(&mut full)?;
            }
            Cow::Owned(full)
        }
        None => Cow::Borrowed(&display),
    };
    let crop = geometry::cover_crop(thumbnail_base.width(), thumbnail_base.height());
    let thumbnail = resize::resample(&thumbnail_base, crop, THUMBNAIL_SIDE, THUMBNAIL_SIDE)?;
    drop(thumbnail_base);

    let thumbhash = thumbhash_of(&thumbnail)?;
    let display_webp = encode::webp_lossy(&display, DISPLAY_QUALITY)?;
    let thumbnail_webp = encode::webp_lossy(&thumbnail, THUMBNAIL_QUALITY)?;

    Ok(Processed {
        source: SourceFacts {
            format,
            bytes: input_len,
            width,
            height,
            oriented_width,
            oriented_height,
            orientation: orientation.to_exif(),
            frames,
            has_alpha,
            converted_to_srgb: to_srgb.is_some(),
        },
        display: Encoded {
            data: display_webp,
            width: display_width,
            height: display_height,
        },
        thumbnail: Encoded {
            data: thumbnail_webp,
            width: THUMBNAIL_SIDE,
            height: THUMBNAIL_SIDE,
        },
        thumbhash,
    })
}

/// Empty input, or a format we don't decode, is refused from the first bytes.
fn supported_format(bytes: &[u8]) -> Result<Format, ProcessError> {
    if bytes.is_empty() {
        return Err(ProcessError::EmptyInput);
    }
    let format = sniff(bytes);
    if !format.is_supported() {
        return Err(ProcessError::UnsupportedFormat { detected: format });
    }
    Ok(format)
}

/// 8-bit RGB, or RGBA when some pixel is actually transparent. Gray becomes RGB and 16-bit
/// becomes 8-bit, because that is what the encoder takes.
fn into_rgb_or_rgba(image: DynamicImage) -> DynamicImage {
    if !image.color().has_alpha() {
        return DynamicImage::ImageRgb8(image.into_rgb8());
    }
    let rgba = image.into_rgba8();
    if rgba.pixels().all(|p| p.0[3] == u8::MAX) {
        DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(rgba).into_rgb8())
    } else {
        DynamicImage::ImageRgba8(rgba)
    }
}

fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

fn thumbhash_of(thumbnail: &DynamicImage) -> Result<Vec<u8>, ProcessError> {
    let small = resize::resample(
        thumbnail,
        resize::whole(thumbnail),
        THUMBHASH_SIDE,
        THUMBHASH_SIDE,
    )?;
    let rgba = small.into_rgba8();
    Ok(thumbhash::rgba_to_thumb_hash(
        THUMBHASH_SIDE as usize,
        THUMBHASH_SIDE as usize,
        rgba.as_raw(),
    ))
}

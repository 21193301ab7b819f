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

#[cfg(extra_codecs)]
mod av1;
mod color;
mod decode;
mod encode;
mod error;
pub mod geometry;
#[cfg(extra_codecs)]
mod heif;
#[cfg(extra_codecs)]
mod heif_image;
#[cfg(extra_codecs)]
mod hevc;
#[cfg(extra_codecs)]
mod jxl;
mod policy;
mod resize;
mod sniff;
pub mod stages;
mod webp;
#[cfg(extra_codecs)]
mod yuv;

use serde::Serialize;

pub use encode::{DISPLAY_QUALITY, THUMBNAIL_QUALITY};
pub use error::ProcessError;
pub use geometry::{DISPLAY_MAX_SIDE, THUMBNAIL_SIDE};
pub use policy::Policy;
pub use sniff::{Format, sniff};
pub use stages::{Runtime, Sequential, Stage};

/// MIME type of every output.
pub const OUTPUT_MIME: &str = "image/webp";

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

/// `probe` reports what the headers claim, however large; `open` still refuses a zero-sized
/// image (as `process` would under any policy). Private: hosts may only tighten limits.
const PROBE_POLICY: Policy = Policy {
    max_input_bytes: u64::MAX,
    max_side: u32::MAX,
    max_pixels: u64::MAX,
    max_frames: u32::MAX,
    max_alloc_bytes: u64::MAX,
};

/// Read format, dimensions, orientation and frame count from the headers. Allocates no
/// pixel buffer; refuses what `process` would refuse for its format alone.
pub fn probe(bytes: &[u8]) -> Result<Probe, ProcessError> {
    let format = stages::supported_format(bytes)?;
    let header = decode::open(bytes, format, &PROBE_POLICY)?.header;
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
    process_with(bytes, policy, &Sequential)
}

/// [`process`], with a host's [`Runtime`] timing the stages and encoding the display image
/// while the thumbnail is made and encoded. Same bytes out as [`process`].
pub fn process_with<R: Runtime>(
    bytes: &[u8],
    policy: &Policy,
    runtime: &R,
) -> Result<Processed, ProcessError> {
    let decoded = runtime.stage(Stage::Decode, || stages::decode(bytes, policy))?;
    let prepared = runtime.stage(Stage::Display, || stages::display(decoded))?;
    let (source, display, thumbnail_base) = prepared.split();
    let display = &display;
    let (display_webp, thumbnail) = runtime.join(
        || {
            runtime.stage(Stage::EncodeDisplay, || {
                stages::encode_webp(display, DISPLAY_QUALITY)
            })
        },
        move || {
            let thumbnail =
                runtime.stage(Stage::Thumbnail, || thumbnail_base.thumbnail(display))?;
            let webp = runtime.stage(Stage::EncodeThumbnail, || {
                stages::encode_webp(&thumbnail.pixels, THUMBNAIL_QUALITY)
            })?;
            Ok::<_, ProcessError>((webp, thumbnail.thumbhash))
        },
    );
    let (thumbnail_webp, thumbhash) = thumbnail?;
    Ok(Processed {
        display: Encoded {
            data: display_webp?,
            width: display.width(),
            height: display.height(),
        },
        thumbnail: Encoded {
            data: thumbnail_webp,
            width: THUMBNAIL_SIDE,
            height: THUMBNAIL_SIDE,
        },
        source,
        thumbhash,
    })
}

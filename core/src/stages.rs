//! The pipeline's stages as public pure functions, and the [`Runtime`] a host lends it.
//!
//! [`crate::process_with`] is these stages composed; they are public so a host can time them
//! (through [`Runtime::stage`]) and benchmarks can measure each one on its own.

use image::DynamicImage;
use image::metadata::Orientation;
use serde::Serialize;

use crate::decode;
use crate::encode;
use crate::error::ProcessError;
use crate::geometry::{self, DISPLAY_MAX_SIDE, THUMBNAIL_SIDE};
use crate::policy::Policy;
use crate::resize;
use crate::sniff::{Format, sniff};
use crate::{SourceFacts, color};

/// Side of the image the ThumbHash is computed from (the algorithm's maximum is 100).
const THUMBHASH_SIDE: u32 = 100;

/// One stage of the upload pipeline, as [`Runtime::stage`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Sniff, limits from the headers, the one pixel decode, 8-bit RGB/RGBA.
    Decode,
    /// Fit inside 2048×2048, EXIF orientation, conversion to sRGB.
    Display,
    /// The 400×400 cover crop and its ThumbHash.
    Thumbnail,
    /// WebP q85 of the display image.
    EncodeDisplay,
    /// WebP q80 of the thumbnail.
    EncodeThumbnail,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Decode,
        Stage::Display,
        Stage::Thumbnail,
        Stage::EncodeDisplay,
        Stage::EncodeThumbnail,
    ];

    /// Stable snake_case name, for metric labels and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Display => "display",
            Stage::Thumbnail => "thumbnail",
            Stage::EncodeDisplay => "encode_display",
            Stage::EncodeThumbnail => "encode_thumbnail",
        }
    }
}

/// What a host lends the pipeline. The core has no clock and starts no threads; a host that
/// has them times stages in [`Runtime::stage`] and runs independent work in parallel in
/// [`Runtime::join`]. The outputs are the same bytes whatever the runtime does.
pub trait Runtime: Sync {
    /// Run one stage. The default just runs it.
    fn stage<T>(&self, stage: Stage, work: impl FnOnce() -> T) -> T {
        let _ = stage;
        work()
    }

    /// Run two independent jobs and return both results. The default runs `a`, then `b`.
    fn join<A: Send, B: Send>(
        &self,
        a: impl FnOnce() -> A + Send,
        b: impl FnOnce() -> B + Send,
    ) -> (A, B) {
        (a(), b())
    }
}

/// No clock, no threads: every stage in order on the caller's thread (wasm, the sandbox).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sequential;

impl Runtime for Sequential {}

/// 8-bit RGB, or RGBA when some pixel is not opaque: the only pixel layouts past decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels(pub(crate) DynamicImage);

impl Pixels {
    pub fn width(&self) -> u32 {
        self.0.width()
    }

    pub fn height(&self) -> u32 {
        self.0.height()
    }

    pub fn has_alpha(&self) -> bool {
        matches!(self.0, DynamicImage::ImageRgba8(_))
    }

    /// The pixels, row-major, 3 or 4 bytes each.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The source image, decoded once, with what its headers said.
#[derive(Debug)]
pub struct Decoded {
    pub pixels: Pixels,
    pub format: Format,
    pub bytes: u64,
    pub frames: u32,
    orientation: Orientation,
    to_srgb: Option<color::ToSrgb>,
}

impl Decoded {
    /// The EXIF orientation that will be applied, 1–8.
    pub fn orientation(&self) -> u8 {
        self.orientation.to_exif()
    }
}

/// The display pixels, and what the thumbnail is cut from when the display can't serve.
#[derive(Debug)]
pub struct Prepared {
    pub source: SourceFacts,
    /// Fits inside 2048×2048, oriented, sRGB.
    pub display: Pixels,
    /// The full source, still unoriented, kept only for extreme panoramas whose display is
    /// too thin for a 400 px crop.
    full: Option<Pixels>,
    orientation: Orientation,
    to_srgb: Option<color::ToSrgb>,
}

/// The thumbnail's pixels and ThumbHash.
#[derive(Debug)]
pub struct Thumbnail {
    pub pixels: Pixels,
    pub thumbhash: Vec<u8>,
}

/// Sniff, check every limit the headers allow, then decode exactly once to 8-bit RGB(A).
pub fn decode(bytes: &[u8], policy: &Policy) -> Result<Decoded, ProcessError> {
    let input_len = bytes.len() as u64;
    if input_len > policy.max_input_bytes {
        return Err(ProcessError::TooLarge {
            actual: input_len,
            limit: policy.max_input_bytes,
        });
    }
    let format = supported_format(bytes)?;
    let mut open = decode::open(bytes, format, policy)?;
    let frames = open.header.frames;
    let orientation = open.header.orientation;
    let header_cicp = open.header.cicp;
    let icc_profile = open.header.icc_profile.take();
    let decoded = open.decode(policy)?;
    // Code points (PNG's cICP, AVIF's nclx), when present, override any ICC profile (PNG
    // third edition, 4.3); an AVIF without either uses its AV1 stream's.
    let to_srgb = match (header_cicp.or(decoded.stream_cicp), &icc_profile) {
        (Some(cicp), _) => color::ToSrgb::from_cicp(cicp),
        (None, Some(icc)) => color::ToSrgb::from_icc(icc),
        (None, None) => None,
    };
    let pixels = into_rgb_or_rgba(decoded.image);
    Ok(Decoded {
        pixels,
        format,
        bytes: input_len,
        frames,
        orientation,
        to_srgb,
    })
}

/// Empty input, or a format we don't decode, is refused from the first bytes.
pub(crate) fn supported_format(bytes: &[u8]) -> Result<Format, ProcessError> {
    if bytes.is_empty() {
        return Err(ProcessError::EmptyInput);
    }
    let format = sniff(bytes);
    if !format.is_supported() {
        return Err(ProcessError::UnsupportedFormat { detected: format });
    }
    Ok(format)
}

/// The display image: fit inside 2048×2048 (never enlarged), oriented, in sRGB.
pub fn display(decoded: Decoded) -> Result<Prepared, ProcessError> {
    let Decoded {
        pixels: source,
        format,
        bytes,
        frames,
        orientation,
        to_srgb,
    } = decoded;
    let (width, height) = (source.width(), source.height());
    let has_alpha = source.has_alpha();
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
    let (display, full) = if downscaled {
        let (w, h) = if swaps_axes {
            (display_height, display_width)
        } else {
            (display_width, display_height)
        };
        (
            resize::resample(&source.0, resize::whole(&source.0), w, h)?,
            Some(source).filter(|_| needs_source),
        )
    } else {
        (source.0, None)
    };
    let mut display = orient(Pixels(display), orientation.to_exif());
    if let Some(transform) = &to_srgb {
        transform.apply(&mut display.0)?;
    }
    Ok(Prepared {
        source: SourceFacts {
            format,
            bytes,
            width,
            height,
            oriented_width,
            oriented_height,
            orientation: orientation.to_exif(),
            frames,
            has_alpha,
            converted_to_srgb: to_srgb.is_some(),
        },
        display,
        full,
        orientation,
        to_srgb,
    })
}

impl Prepared {
    /// Split into the display pixels and the (usually borrowed) base of the thumbnail, so
    /// the display's encoding and the thumbnail can run at the same time.
    pub fn split(self) -> (SourceFacts, Pixels, ThumbnailBase) {
        let base = ThumbnailBase {
            full: self.full,
            orientation: self.orientation,
            to_srgb: self.to_srgb,
        };
        (self.source, self.display, base)
    }
}

/// What the thumbnail is cut from: the display pixels, or for extreme panoramas the source.
#[derive(Debug)]
pub struct ThumbnailBase {
    full: Option<Pixels>,
    orientation: Orientation,
    to_srgb: Option<color::ToSrgb>,
}

impl ThumbnailBase {
    /// The 400×400 centre cover crop and its ThumbHash.
    pub fn thumbnail(self, display: &Pixels) -> Result<Thumbnail, ProcessError> {
        let pixels = match self.full {
            Some(full) => {
                let mut full = orient(full, self.orientation.to_exif());
                if let Some(transform) = &self.to_srgb {
                    transform.apply(&mut full.0)?;
                }
                cover(&full, THUMBNAIL_SIDE)?
            }
            None => cover(display, THUMBNAIL_SIDE)?,
        };
        let thumbhash = thumbhash_of(&pixels)?;
        Ok(Thumbnail { pixels, thumbhash })
    }
}

/// Resample to fit inside `max_side`×`max_side`, never enlarging (Lanczos3).
pub fn fit_inside(pixels: &Pixels, max_side: u32) -> Result<Pixels, ProcessError> {
    let (w, h) = geometry::fit_inside(pixels.width(), pixels.height(), max_side);
    if (w, h) == (pixels.width(), pixels.height()) {
        return Ok(pixels.clone());
    }
    resize::resample(&pixels.0, resize::whole(&pixels.0), w, h).map(Pixels)
}

/// Apply an EXIF orientation (1–8; anything else is upright).
pub fn orient(mut pixels: Pixels, exif_orientation: u8) -> Pixels {
    if let Some(orientation) = Orientation::from_exif(exif_orientation) {
        pixels.0.apply_orientation(orientation);
    }
    pixels
}

/// The largest centred square, resampled to `side`×`side` (enlarged if need be).
pub fn cover(pixels: &Pixels, side: u32) -> Result<Pixels, ProcessError> {
    let crop = geometry::cover_crop(pixels.width(), pixels.height());
    resize::resample(&pixels.0, crop, side, side).map(Pixels)
}

/// Lossy WebP at `quality` (0–100), alpha kept when present. Only pixels go in.
pub fn encode_webp(pixels: &Pixels, quality: f32) -> Result<Vec<u8>, ProcessError> {
    encode::webp_lossy(&pixels.0, quality)
}

/// 8-bit RGB, or RGBA when some pixel is actually transparent. Gray becomes RGB and 16-bit
/// becomes 8-bit, because that is what the encoder takes.
fn into_rgb_or_rgba(image: DynamicImage) -> Pixels {
    if !image.color().has_alpha() {
        return Pixels(DynamicImage::ImageRgb8(image.into_rgb8()));
    }
    let rgba = image.into_rgba8();
    if rgba.pixels().all(|p| p.0[3] == u8::MAX) {
        Pixels(DynamicImage::ImageRgb8(
            DynamicImage::ImageRgba8(rgba).into_rgb8(),
        ))
    } else {
        Pixels(DynamicImage::ImageRgba8(rgba))
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

fn thumbhash_of(thumbnail: &Pixels) -> Result<Vec<u8>, ProcessError> {
    let small = resize::resample(
        &thumbnail.0,
        resize::whole(&thumbnail.0),
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

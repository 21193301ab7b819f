//! Bounded decoding: headers first, limits checked, then exactly one pixel decode.

use std::io::Cursor;

use image::error::{ImageError, LimitErrorKind};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

use crate::error::ProcessError;
#[cfg(extra_codecs)]
use crate::heif;
use crate::policy::Policy;
use crate::sniff::Format;

/// What the png crate may allocate for its own buffers (metadata chunks, the inflated ICC
/// profile and text) over a whole decode; the pixels are not counted. Real profiles are
/// kilobytes to a few MiB.
const PNG_METADATA_ALLOC_BYTES: u64 = 64 << 20;

/// What the headers say, read without allocating a pixel buffer.
pub(crate) struct Header {
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
    pub icc_profile: Option<Vec<u8>>,
    /// PNG `cICP`. Takes precedence over ICC.
    pub cicp: Option<Cicp>,
    /// Frames in the file, counted up to one past the caller's limit.
    pub frames: u32,
}

/// ITU-T H.273 code points, as PNG's `cICP` chunk carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cicp {
    pub primaries: u8,
    pub transfer: u8,
    pub matrix: u8,
    pub full_range: bool,
}

/// A decoder whose headers have been read, ready for the one pixel decode.
pub(crate) struct OpenImage<'a> {
    pub header: Header,
    pub(crate) format: Format,
    pub(crate) decoder: Decoder<'a>,
}

pub(crate) enum Decoder<'a> {
    /// zune-jpeg used directly: strict about truncation (which `image` leaves lenient), and
    /// the headers are parsed once instead of once per metadata query.
    Jpeg(Box<zune_jpeg::JpegDecoder<ZCursor<&'a [u8]>>>),
    Other(Box<dyn ImageDecoder + 'a>),
    /// A still WebP, decoded by libwebp (`webp.rs`); image-webp has read its headers.
    WebpStill(&'a [u8]),
    /// A HEIF file's (AVIF, HEIC) primary image, its sizes checked, and the crop to apply
    /// after decoding.
    #[cfg(extra_codecs)]
    Heif {
        image: Box<heif::Image>,
        crop: Option<(u32, u32, u32, u32)>,
    },
    /// A JPEG XL whose size was checked and whose frames are loaded, not yet rendered.
    #[cfg(extra_codecs)]
    Jxl(Box<jxl_oxide::JxlImage>),
}

/// The decoded pixels, and the colour description a codec found in the coded stream when
/// the headers had none (an AVIF without `colr`: its AV1 sequence header's).
pub(crate) struct Pixels {
    pub image: DynamicImage,
    pub stream_cicp: Option<Cicp>,
}

/// Read the headers of a supported image and check what they claim against `policy`
/// (sides, pixels, frames). Allocations here are bounded by the input size (each decoder
/// keeps its own cap on metadata chunks), never by the claimed dimensions.
///
/// Frames are counted up to `policy.max_frames + 1` without decoding them, so counting
/// costs at most one pass over the input (bounded by `max_input_bytes`).
pub(crate) fn open<'a>(
    bytes: &'a [u8],
    format: Format,
    policy: &Policy,
) -> Result<OpenImage<'a>, ProcessError> {
    let open = match format {
        Format::Jpeg => open_jpeg(bytes, policy)?,
        #[cfg(extra_codecs)]
        Format::Avif | Format::Heic => crate::heif_image::open(bytes, format, policy)?,
        #[cfg(extra_codecs)]
        Format::Jxl => crate::jxl::open(bytes, policy)?,
        _ => open_with_image(bytes, format, policy)?,
    };
    if open.header.frames > policy.max_frames {
        return Err(ProcessError::TooManyFrames {
            limit: policy.max_frames,
        });
    }
    Ok(open)
}

fn open_with_image<'a>(
    bytes: &'a [u8],
    format: Format,
    policy: &Policy,
) -> Result<OpenImage<'a>, ProcessError> {
    let Some(image_format) = format.image_format() else {
        return Err(ProcessError::UnsupportedFormat { detected: format });
    };
    // A PNG's own header read comes first: it checks the sides on the IHDR alone, before
    // anything sizes a buffer from them (see `png_header`).
    let png = match format {
        Format::Png => Some(png_header(bytes, policy)?),
        _ => None,
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    // Our own checks run on the header and give precise errors; the decoder limits are
    // installed right after them, before any pixel is read (`OpenImage::decode`). Only the
    // PNG decoder's own buffers are capped from the start: it inflates an iCCP profile
    // while reading the headers, and a 1 MB file can inflate to gigabytes. Past the cap the
    // png crate drops the profile (as it does any unusable one) and decoding goes on.
    let mut limits = Limits::no_limits();
    if format == Format::Png {
        limits.max_alloc = Some(PNG_METADATA_ALLOC_BYTES);
    }
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_image_error(format, u64::MAX, e))?;
    let (width, height) = decoder.dimensions();
    if png.is_none() {
        check_dimensions(format, width, height, policy)?;
    }
    // A broken or lying EXIF block is not a reason to refuse a photo: unknown means upright.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc_profile = decoder.icc_profile().ok().flatten();
    let mut still_webp = false;
    let (frames, cicp) = match (format, png) {
        (_, Some(png)) => (png.frames, png.cicp),
        (Format::Gif, None) => (count_gif_frames(bytes, policy.max_frames)?, None),
        (Format::Webp, None) => {
            let (frames, animated) = webp_frames(bytes)?;
            still_webp = !animated;
            (frames, None)
        }
        #[cfg(extra_codecs)]
        (Format::Tiff, None) => (count_tiff_frames(bytes, policy.max_frames)?, None),
        _ => (1, None),
    };
    Ok(OpenImage {
        header: Header {
            width,
            height,
            orientation,
            icc_profile,
            cicp,
            frames,
        },
        format,
        decoder: if still_webp {
            Decoder::WebpStill(bytes)
        } else {
            Decoder::Other(Box::new(decoder))
        },
    })
}

fn open_jpeg<'a>(bytes: &'a [u8], policy: &Policy) -> Result<OpenImage<'a>, ProcessError> {
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        // CMYK/YCCK and gray are converted by the decoder; we always take 8-bit RGB.
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(jpeg_error)?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| jpeg_error("no frame header"))?;
    let orientation = decoder
        .exif()
        .and_then(|exif| Orientation::from_exif_chunk(exif))
        .unwrap_or(Orientation::NoTransforms);
    let icc_profile = decoder.icc_profile();
    let width = u32::try_from(width).map_err(jpeg_error)?;
    let height = u32::try_from(height).map_err(jpeg_error)?;
    check_dimensions(Format::Jpeg, width, height, policy)?;
    Ok(OpenImage {
        header: Header {
            width,
            height,
            orientation,
            icc_profile,
            cicp: None,
            frames: 1,
        },
        format: Format::Jpeg,
        decoder: Decoder::Jpeg(Box::new(decoder)),
    })
}

fn jpeg_error(error: impl std::fmt::Display) -> ProcessError {
    let reason = error.to_string();
    let lower = reason.to_ascii_lowercase();
    if lower.contains("arithmetic")
        || lower.contains("lossless")
        || lower.contains("hierarchical")
        || lower.contains("unsupported")
    {
        ProcessError::UnsupportedFeature {
            format: Format::Jpeg,
            reason,
        }
    } else {
        corrupt(Format::Jpeg, reason)
    }
}

/// The error for a file that breaks its own format's rules.
pub(crate) fn corrupt(format: Format, reason: impl std::fmt::Display) -> ProcessError {
    ProcessError::CorruptImage {
        format,
        reason: reason.to_string(),
    }
}

impl OpenImage<'_> {
    /// Decode the pixels (the first frame of an animation) under the policy's allocation cap.
    pub fn decode(self, policy: &Policy) -> Result<Pixels, ProcessError> {
        let cap = policy.max_alloc_bytes;
        let (width, height) = (self.header.width, self.header.height);
        let image = match self.decoder {
            Decoder::Jpeg(mut decoder) => {
                let needed = decoder.output_buffer_size().unwrap_or(usize::MAX) as u64;
                if needed > cap {
                    return Err(ProcessError::MemoryLimit { limit: cap });
                }
                let pixels = decoder.decode().map_err(jpeg_error)?;
                RgbImage::from_raw(width, height, pixels)
                    .map(DynamicImage::ImageRgb8)
                    .ok_or_else(|| jpeg_error("decoded buffer does not match the header"))?
            }
            Decoder::WebpStill(bytes) => crate::webp::decode_still(bytes, width, height, cap)?,
            Decoder::Other(mut decoder) => {
                let format = self.format;
                let mut limits = Limits::default();
                limits.max_image_width = Some(policy.max_side);
                limits.max_image_height = Some(policy.max_side);
                limits.max_alloc = Some(cap);
                decoder
                    .set_limits(limits)
                    .map_err(|e| map_image_error(format, cap, e))?;
                if decoder.total_bytes() > cap {
                    return Err(ProcessError::MemoryLimit { limit: cap });
                }
                DynamicImage::from_decoder(decoder).map_err(|e| map_image_error(format, cap, e))?
            }
            #[cfg(extra_codecs)]
            Decoder::Jxl(image) => crate::jxl::decode(&image, policy)?,
            #[cfg(extra_codecs)]
            Decoder::Heif { image, crop } => {
                let decoded = crate::heif_image::decode(self.format, *image, policy)?;
                let pixels = match crop {
                    Some((left, top, w, h)) => decoded.image.crop_imm(left, top, w, h),
                    None => decoded.image,
                };
                return Ok(Pixels {
                    image: pixels,
                    stream_cicp: decoded.stream_cicp,
                });
            }
        };
        Ok(Pixels {
            image,
            stream_cicp: None,
        })
    }
}

/// A zero-sized image is a corrupt header, whatever the policy (`probe` refuses it too).
fn check_not_empty(format: Format, width: u32, height: u32) -> Result<(), ProcessError> {
    if width == 0 || height == 0 {
        return Err(corrupt(
            format,
            format!("zero-sized image ({width}x{height})"),
        ));
    }
    Ok(())
}

/// Check claimed dimensions against the policy. Runs before any pixel allocation.
pub(crate) fn check_dimensions(
    format: Format,
    width: u32,
    height: u32,
    policy: &Policy,
) -> Result<(), ProcessError> {
    check_not_empty(format, width, height)?;
    if width > policy.max_side || height > policy.max_side {
        return Err(ProcessError::DimensionsTooLarge {
            width,
            height,
            limit: policy.max_side,
        });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > policy.max_pixels {
        return Err(ProcessError::TooManyPixels {
            width,
            height,
            pixels,
            limit: policy.max_pixels,
        });
    }
    Ok(())
}

/// A WebP's frame count, and whether it is an animation (which may have a single frame).
fn webp_frames(bytes: &[u8]) -> Result<(u32, bool), ProcessError> {
    let decoder =
        image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(|e| corrupt(Format::Webp, e))?;
    Ok(if decoder.is_animated() {
        (decoder.num_frames(), true)
    } else {
        (1, false)
    })
}

/// What a PNG's own headers add to image's decoder: the APNG frame count (`acTL`) and the
/// `cICP` colour description.
struct PngHeader {
    frames: u32,
    cicp: Option<Cicp>,
}

/// One read of a PNG's headers that checks the IHDR's sides against the policy first: the
/// png crate sizes its row buffers while reading the rest of the headers and, where `usize`
/// is 32 bits (wasm), refuses huge sides with its own limit error; checking them first gives
/// every target the same precise refusal (`dimensions_too_large`, `too_many_pixels`).
fn png_header(bytes: &[u8], policy: &Policy) -> Result<PngHeader, ProcessError> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    let ihdr = decoder
        .read_header_info()
        .map_err(|e| corrupt(Format::Png, e))?;
    check_dimensions(Format::Png, ihdr.width, ihdr.height, policy)?;
    let reader = decoder.read_info().map_err(|e| corrupt(Format::Png, e))?;
    let info = reader.info();
    let frames = info
        .animation_control
        .map_or(1, |actl| actl.num_frames.max(1));
    let cicp = info.coding_independent_code_points.map(|c| Cicp {
        primaries: c.color_primaries,
        transfer: c.transfer_function,
        matrix: c.matrix_coefficients,
        full_range: c.is_video_full_range_image,
    });
    Ok(PngHeader { frames, cicp })
}

/// TIFF pages (IFDs), counted up to one past `stop_after`. The tiff crate refuses an IFD
/// chain that loops back on itself.
#[cfg(extra_codecs)]
fn count_tiff_frames(bytes: &[u8], stop_after: u32) -> Result<u32, ProcessError> {
    let mut decoder =
        tiff::decoder::Decoder::new(Cursor::new(bytes)).map_err(|e| corrupt(Format::Tiff, e))?;
    let mut frames = 1u32;
    while frames <= stop_after && decoder.more_images() {
        match decoder.next_image() {
            Ok(()) => frames = frames.saturating_add(1),
            // A broken later page does not stop the first one from being shown.
            Err(_) => break,
        }
    }
    Ok(frames)
}

fn count_gif_frames(bytes: &[u8], stop_after: u32) -> Result<u32, ProcessError> {
    let mut options = gif::DecodeOptions::new();
    // Count without LZW-decoding anything: a frame bomb costs one scan of the input.
    options.skip_frame_decoding(true);
    let mut decoder = options
        .read_info(Cursor::new(bytes))
        .map_err(|e| corrupt(Format::Gif, e))?;
    let mut frames = 0u32;
    while frames <= stop_after {
        match decoder.next_frame_info() {
            Ok(Some(_)) => frames = frames.saturating_add(1),
            Ok(None) => break,
            // Trailing garbage after at least one good frame is common in the wild and
            // harmless: we only use the first frame. Before it, the file is broken.
            Err(e) if frames == 0 => return Err(corrupt(Format::Gif, e)),
            Err(_) => break,
        }
    }
    if frames == 0 {
        return Err(corrupt(Format::Gif, "the GIF has no frames"));
    }
    Ok(frames)
}

/// Translate a decoder error. `alloc_limit` is the cap that was in force, for the message.
pub(crate) fn map_image_error(format: Format, alloc_limit: u64, error: ImageError) -> ProcessError {
    match error {
        ImageError::Limits(limit) => match limit.kind() {
            LimitErrorKind::DimensionError => {
                corrupt(format, "dimensions exceed the decoder's limits")
            }
            _ => ProcessError::MemoryLimit { limit: alloc_limit },
        },
        ImageError::Unsupported(e) => ProcessError::UnsupportedFeature {
            format,
            reason: e.to_string(),
        },
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            corrupt(format, "the file is truncated")
        }
        other => corrupt(format, other),
    }
}

//! Bounded decoding: headers first, limits checked, then exactly one pixel decode.

use std::io::Cursor;

use image::error::{ImageError, LimitErrorKind};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use crate::error::ProcessError;
use crate::policy::Policy;
use crate::sniff::Format;

/// What the headers say, read without allocating a pixel buffer.
pub(crate) struct Header {
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
    pub icc_profile: Option<Vec<u8>>,
}

/// A decoder whose headers have been read, ready for the one pixel decode.
pub(crate) struct OpenImage<D> {
    pub header: Header,
    decoder: D,
    format: Format,
}

/// Read the headers of a supported image. Allocations here are bounded by the input size
/// (each decoder keeps its own cap on metadata chunks), never by the claimed dimensions.
pub(crate) fn open(
    bytes: &[u8],
    format: Format,
) -> Result<OpenImage<impl ImageDecoder + '_>, ProcessError> {
    let Some(image_format) = format.image_format() else {
        return Err(ProcessError::UnsupportedFormat { detected: format });
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    // Our own checks run on the header below and give precise errors; the decoder limits
    // are installed right after them, before any pixel is read.
    reader.no_limits();
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_image_error(format, u64::MAX, e))?;
    let (width, height) = decoder.dimensions();
    // A broken or lying EXIF block is not a reason to refuse a photo: unknown means upright.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc_profile = decoder.icc_profile().ok().flatten();
    Ok(OpenImage {
        header: Header {
            width,
            height,
            orientation,
            icc_profile,
        },
        decoder,
        format,
    })
}

impl<D: ImageDecoder> OpenImage<D> {
    /// Decode the pixels (the first frame of an animation) under the policy's allocation cap.
    pub fn decode(mut self, policy: &Policy) -> Result<DynamicImage, ProcessError> {
        let format = self.format;
        let cap = policy.max_alloc_bytes;
        let mut limits = Limits::default();
        limits.max_image_width = Some(policy.max_side);
        limits.max_image_height = Some(policy.max_side);
        limits.max_alloc = Some(policy.max_alloc_bytes);
        self.decoder
            .set_limits(limits)
            .map_err(|e| map_image_error(format, cap, e))?;
        if self.decoder.total_bytes() > policy.max_alloc_bytes {
            return Err(ProcessError::MemoryLimit {
                limit: policy.max_alloc_bytes,
            });
        }
        DynamicImage::from_decoder(self.decoder).map_err(|e| map_image_error(format, cap, e))
    }
}

/// Check claimed dimensions against the policy. Runs before any pixel allocation.
pub(crate) fn check_dimensions(
    format: Format,
    width: u32,
    height: u32,
    policy: &Policy,
) -> Result<(), ProcessError> {
    if width == 0 || height == 0 {
        return Err(ProcessError::CorruptImage {
            format,
            reason: format!("zero-sized image ({width}x{height})"),
        });
    }
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

/// Count animation frames, stopping once `stop_after` is exceeded so a frame bomb costs no
/// more than the frames we would refuse anyway. Still images count as one frame.
pub(crate) fn count_frames(
    bytes: &[u8],
    format: Format,
    stop_after: u32,
) -> Result<u32, ProcessError> {
    match format {
        Format::Gif => count_gif_frames(bytes, stop_after),
        Format::Webp => {
            let decoder = image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(|e| {
                ProcessError::CorruptImage {
                    format,
                    reason: e.to_string(),
                }
            })?;
            Ok(if decoder.is_animated() {
                decoder.num_frames()
            } else {
                1
            })
        }
        Format::Png => {
            let reader = png::Decoder::new(Cursor::new(bytes))
                .read_info()
                .map_err(|e| ProcessError::CorruptImage {
                    format,
                    reason: e.to_string(),
                })?;
            Ok(reader
                .info()
                .animation_control
                .map_or(1, |actl| actl.num_frames.max(1)))
        }
        _ => Ok(1),
    }
}

fn count_gif_frames(bytes: &[u8], stop_after: u32) -> Result<u32, ProcessError> {
    let corrupt = |e: gif::DecodingError| ProcessError::CorruptImage {
        format: Format::Gif,
        reason: e.to_string(),
    };
    let mut options = gif::DecodeOptions::new();
    // Count without LZW-decoding anything: a frame bomb costs one scan of the input.
    options.skip_frame_decoding(true);
    let mut decoder = options.read_info(Cursor::new(bytes)).map_err(corrupt)?;
    let mut frames = 0u32;
    while frames <= stop_after {
        match decoder.next_frame_info() {
            Ok(Some(_)) => frames += 1,
            Ok(None) => break,
            // Trailing garbage after at least one good frame is common in the wild and
            // harmless: we only use the first frame. Before it, the file is broken.
            Err(e) if frames == 0 => return Err(corrupt(e)),
            Err(_) => break,
        }
    }
    if frames == 0 {
        return Err(ProcessError::CorruptImage {
            format: Format::Gif,
            reason: "the GIF has no frames".into(),
        });
    }
    Ok(frames)
}

/// Translate a decoder error. `alloc_limit` is the cap that was in force, for the message.
pub(crate) fn map_image_error(format: Format, alloc_limit: u64, error: ImageError) -> ProcessError {
    match error {
        ImageError::Limits(limit) => match limit.kind() {
            LimitErrorKind::DimensionError => ProcessError::CorruptImage {
                format,
                reason: "dimensions exceed the decoder's limits".into(),
            },
            _ => ProcessError::MemoryLimit { limit: alloc_limit },
        },
        ImageError::Unsupported(e) => ProcessError::UnsupportedFeature {
            format,
            reason: e.to_string(),
        },
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            ProcessError::CorruptImage {
                format,
                reason: "the file is truncated".into(),
            }
        }
        other => ProcessError::CorruptImage {
            format,
            reason: other.to_string(),
        },
    }
}

//! JPEG XL, decoded by jxl-oxide (pure Rust), on one thread, with its allocations capped by
//! the policy. The image header (ISO/IEC 18181-1, D.2) is read here first, from the start of
//! the codestream, with jxl-oxide's own header parser: the size is checked against the
//! policy, and an embedded ICC profile's claimed length against the file's, before
//! jxl-oxide is given the file, so a small file claiming a huge image (or a 256 MiB
//! profile, which jxl-oxide would allocate up front) costs nothing.
//!
//! Colour: an image stored as XYB or with a named colour space (sRGB, Display P3, BT.2020,
//! …) is rendered by jxl-oxide straight to sRGB; one stored with its own ICC profile is
//! rendered as stored and the profile goes to the pipeline's colour conversion, as a JPEG's
//! would. Orientation is applied by jxl-oxide.

use image::metadata::Orientation;
use image::{DynamicImage, GrayAlphaImage, GrayImage, RgbImage, RgbaImage};
use jxl_oxide::{
    AllocTracker, EnumColourEncoding, JxlImage, JxlThreadPool, PixelFormat, RenderingIntent,
};

use jxl_bitstream::Bitstream;
use jxl_oxide::ImageHeader;
use jxl_oxide_common::Bundle;

use crate::decode::{Decoder, Header, OpenImage, check_dimensions};
use crate::error::ProcessError;
use crate::policy::Policy;
use crate::sniff::Format;

fn corrupt(reason: impl std::fmt::Display) -> ProcessError {
    ProcessError::CorruptImage {
        format: Format::Jxl,
        reason: reason.to_string(),
    }
}

fn unsupported(reason: impl std::fmt::Display) -> ProcessError {
    ProcessError::UnsupportedFeature {
        format: Format::Jxl,
        reason: reason.to_string(),
    }
}

/// Read the header, check the claimed size, then let jxl-oxide read the whole file (its
/// frames' data is loaded, not decoded).
pub(crate) fn open<'a>(bytes: &'a [u8], policy: &Policy) -> Result<OpenImage<'a>, ProcessError> {
    let header = read_header(bytes)?;
    check_dimensions(Format::Jxl, header.width, header.height, policy)?;
    if let Some(claimed) = header.icc_bytes {
        let plausible = (bytes.len() as u64)
            .saturating_mul(ICC_EXPANSION)
            .max(1 << 20);
        if claimed > plausible {
            return Err(corrupt(format!(
                "the ICC profile claims {claimed} bytes, more than a {}-byte file can hold",
                bytes.len()
            )));
        }
        if claimed > MAX_ICC_BYTES {
            return Err(unsupported(format!(
                "an ICC profile of {claimed} bytes (at most {MAX_ICC_BYTES})"
            )));
        }
    }
    let tracker =
        AllocTracker::with_limit(usize::try_from(policy.max_alloc_bytes).unwrap_or(usize::MAX));
    let mut uninit = JxlImage::builder()
        .pool(JxlThreadPool::none())
        .alloc_tracker(tracker)
        .build_uninit();
    uninit.feed_bytes(bytes).map_err(|e| jxl_error(e, policy))?;
    let mut image = match uninit.try_init().map_err(|e| jxl_error(e, policy))? {
        jxl_oxide::InitializeResult::Initialized(image) => image,
        jxl_oxide::InitializeResult::NeedMoreData(_) => {
            return Err(corrupt("the file ends inside its header"));
        }
    };
    image.finalize().map_err(|e| jxl_error(e, policy))?;
    if !image.is_loading_done() || image.num_loaded_keyframes() == 0 {
        return Err(corrupt("the file ends before its first frame"));
    }
    if image.pixel_format().has_black() {
        return Err(unsupported("CMYK images"));
    }
    // A named colour space or XYB: jxl-oxide renders sRGB itself. An ICC profile of the
    // image's own: rendered as stored, the profile converted by the pipeline.
    let icc_profile = match image.original_icc() {
        Some(icc) if !image.image_header().metadata.xyb_encoded => Some(icc.to_vec()),
        _ => {
            image.request_color_encoding(EnumColourEncoding::srgb(RenderingIntent::Relative));
            None
        }
    };
    let frames = u32::try_from(image.num_loaded_keyframes()).unwrap_or(u32::MAX);
    // With orientation applied (jxl-oxide turns the pixels).
    let (width, height) = (image.width(), image.height());
    check_dimensions(Format::Jxl, width, height, policy)?;
    Ok(OpenImage {
        header: Header {
            width,
            height,
            orientation: Orientation::NoTransforms,
            icc_profile,
            cicp: None,
            frames,
        },
        format: Format::Jxl,
        decoder: Decoder::Jxl(Box::new(image)),
    })
}

/// Render the first frame to 8 bits per sample.
pub(crate) fn decode(image: &JxlImage, policy: &Policy) -> Result<DynamicImage, ProcessError> {
    let render = image.render_frame(0).map_err(|e| jxl_error(e, policy))?;
    let mut stream = render.stream();
    let (w, h, channels) = (stream.width(), stream.height(), stream.channels());
    let expected = match image.pixel_format() {
        PixelFormat::Gray => 1,
        PixelFormat::Graya => 2,
        PixelFormat::Rgb => 3,
        PixelFormat::Rgba => 4,
        PixelFormat::Cmyk | PixelFormat::Cmyka => return Err(unsupported("CMYK images")),
    };
    if channels != expected || (w, h) != (image.width(), image.height()) {
        return Err(corrupt("the rendered frame does not match the header"));
    }
    let needed = u64::from(w) * u64::from(h) * u64::from(channels);
    if needed > policy.max_alloc_bytes {
        return Err(ProcessError::MemoryLimit {
            limit: policy.max_alloc_bytes,
        });
    }
    let mut buffer = vec![0u8; needed as usize];
    stream.write_to_buffer(&mut buffer);
    match channels {
        1 => GrayImage::from_raw(w, h, buffer).map(DynamicImage::ImageLuma8),
        2 => GrayAlphaImage::from_raw(w, h, buffer).map(DynamicImage::ImageLumaA8),
        3 => RgbImage::from_raw(w, h, buffer).map(DynamicImage::ImageRgb8),
        _ => RgbaImage::from_raw(w, h, buffer).map(DynamicImage::ImageRgba8),
    }
    .ok_or_else(|| corrupt("decoded buffer does not match the header"))
}

/// jxl-oxide's errors: running out of the allocation budget (its allocation tracker's
/// "failed to allocate", anywhere in the chain) is the policy's memory limit; the rest are
/// a corrupt file.
fn jxl_error(error: Box<dyn std::error::Error + Send + Sync>, policy: &Policy) -> ProcessError {
    let text = error.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    let mut out_of_budget = false;
    while let Some(e) = source {
        out_of_budget |= e.to_string().contains("failed to allocate");
        source = e.source();
    }
    if out_of_budget {
        ProcessError::MemoryLimit {
            limit: policy.max_alloc_bytes,
        }
    } else {
        corrupt(text)
    }
}

/// The first bytes of the codestream: the file itself (bare codestream, `FF 0A`), or the
/// contents of its `jxlc` box, or of its `jxlp` boxes joined (ISO/IEC 18181-2). Only as
/// much as a `SizeHeader` needs is gathered.
fn codestream_start(bytes: &[u8]) -> Result<Vec<u8>, &'static str> {
    // The image header and the ICC profile's length come first; 64 KiB holds them.
    const ENOUGH: usize = 64 << 10;
    if bytes.starts_with(&[0xFF, 0x0A]) {
        return Ok(bytes[..bytes.len().min(ENOUGH)].to_vec());
    }
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() && out.len() < ENOUGH {
        let header = rest.get(..8).ok_or("a box header is cut short")?;
        let size = u64::from(u32::from_be_bytes([
            header[0], header[1], header[2], header[3],
        ]));
        let kind = &header[4..8];
        let (body_at, size) = match size {
            0 => (8, rest.len() as u64),
            1 => {
                let large = rest.get(8..16).ok_or("a box header is cut short")?;
                let mut b = [0u8; 8];
                b.copy_from_slice(large);
                (16, u64::from_be_bytes(b))
            }
            n => (8, n),
        };
        let size = usize::try_from(size).map_err(|_| "a box is larger than the file")?;
        if size < body_at || size > rest.len() {
            return Err("a box's size does not fit the file");
        }
        let body = &rest[body_at..size];
        match kind {
            b"jxlc" => out.extend_from_slice(body),
            // A partial codestream box starts with its 4-byte index.
            b"jxlp" => out.extend_from_slice(body.get(4..).ok_or("a 'jxlp' box is cut short")?),
            _ => {}
        }
        rest = &rest[size..];
    }
    if !out.starts_with(&[0xFF, 0x0A]) {
        return Err("no JPEG XL codestream");
    }
    out.truncate(ENOUGH);
    Ok(out)
}

/// The largest embedded ICC profile accepted (real ones are kilobytes; printer profiles with
/// big lookup tables a few MiB).
const MAX_ICC_BYTES: u64 = 16 << 20;
/// How much larger than the file an embedded ICC profile may claim to be (compressed
/// profiles shrink a few times, not tens), with 1 MiB allowed whatever the file's size.
const ICC_EXPANSION: u64 = 64;

/// What the image header claims.
#[derive(Debug, PartialEq, Eq)]
struct Claims {
    /// Before orientation.
    width: u32,
    height: u32,
    /// The embedded ICC profile's encoded length, when there is one.
    icc_bytes: Option<u64>,
}

/// Read the image header from the start of the codestream.
fn read_header(bytes: &[u8]) -> Result<Claims, ProcessError> {
    let codestream = codestream_start(bytes).map_err(corrupt)?;
    let mut bits = Bitstream::new(&codestream);
    let header = ImageHeader::parse(&mut bits, ())
        .map_err(|e| corrupt(format!("the image header is invalid: {e}")))?;
    let icc_bytes = if header.metadata.colour_encoding.want_icc() {
        Some(
            bits.read_u64()
                .map_err(|_| corrupt("the file ends inside its header"))?,
        )
    } else {
        None
    };
    Ok(Claims {
        width: header.size.width,
        height: header.size.height,
        icc_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgsvc_testkit::forge::{JxlBits, jxl_claiming};

    fn size(bytes: &[u8]) -> Option<(u32, u32)> {
        read_header(bytes).ok().map(|c| (c.width, c.height))
    }

    /// The small `SizeHeader` form: height (3+1)*8 = 32, ratio 0, width (7+1)*8 = 64; then
    /// ImageMetadata.all_default and default_m.
    fn small_64x32() -> Vec<u8> {
        JxlBits::default()
            .put(1, 1)
            .put(3, 5)
            .put(0, 3)
            .put(7, 5)
            .put(1, 1)
            .put(1, 1)
            .codestream(64)
    }

    #[test]
    fn sizes_ratios_and_icc_claims_are_read() {
        assert_eq!(size(&small_64x32()), Some((64, 32)));
        assert_eq!(size(&jxl_claiming(70_000, 3, None)), Some((70_000, 3)));
        // Height 1000 (selector 1, 13 bits), ratio 5 (16:9): width 1777.
        let ratio = JxlBits::default()
            .put(0, 1)
            .put(1, 2)
            .put(999, 13)
            .put(5, 3)
            .put(1, 1)
            .put(1, 1)
            .codestream(64);
        assert_eq!(size(&ratio), Some((1777, 1000)));
        let icc = read_header(&jxl_claiming(64, 64, Some(1 << 28))).unwrap();
        assert_eq!(icc.icc_bytes, Some(1 << 28));
    }

    #[test]
    fn the_size_is_found_inside_a_container_even_when_split() {
        let stream = small_64x32();
        let mut file = b"\0\0\0\x0cJXL \r\n\x87\n".to_vec();
        file.extend_from_slice(b"\0\0\0\x14ftypjxl \0\0\0\0jxl ");
        for (i, part) in stream.chunks(3).enumerate() {
            file.extend_from_slice(&(12 + part.len() as u32).to_be_bytes());
            file.extend_from_slice(b"jxlp");
            file.extend_from_slice(&(i as u32).to_be_bytes());
            file.extend_from_slice(part);
        }
        assert_eq!(size(&file), Some((64, 32)));
    }

    #[test]
    fn cut_or_lying_headers_are_errors_not_panics() {
        assert!(read_header(&[0xFF, 0x0A]).is_err());
        assert!(read_header(b"\0\0\0\x0cJXL \r\n\x87\n").is_err());
        assert!(read_header(b"\0\0\0\x0cJXL \r\n\x87\n\xff\xff\xff\xffjxlc").is_err());
        assert!(read_header(b"\0\0\0\x0cJXL \r\n\x87\n\0\0\0\x01jxlc").is_err());
    }
}

//! The image a HEIF file (AVIF, HEIC) shows: its primary item read by `heif.rs`, every
//! size it claims checked against the policy, each coded image (one, or a grid's tiles)
//! decoded by its codec (`av1.rs`, `hevc.rs`) and converted to 8-bit RGB(A) by `yuv.rs`,
//! with alpha from its auxiliary image. Crop, rotation and mirror are worked out here and
//! applied by the pipeline.
//!
//! The codecs build everywhere but `wasm32-unknown-unknown`, the browser package's base
//! module (`build.rs` sets the `extra_codecs` cfg).

use image::metadata::Orientation;
use image::{DynamicImage, Rgb, RgbImage, RgbaImage};

use crate::decode::{Cicp, Decoder, Header, OpenImage, check_dimensions, corrupt as corrupt_in};
use crate::error::ProcessError;
use crate::heif::{self, CodecKind, Coded, HeifError, Nclx, Payload, Transform};
use crate::policy::Policy;
use crate::sniff::Format;
use crate::yuv::{Frame, Matrix, Placement};

/// Decode one coded image with its codec and hand the picture to `use_frame`.
fn with_frame(
    payload: Payload,
    policy: &Policy,
    use_frame: impl FnOnce(&Frame<'_>) -> Result<(), HeifError>,
) -> Result<(), HeifError> {
    match payload.codec {
        CodecKind::Av1 => crate::av1::with_frame(payload, policy, use_frame),
        CodecKind::Hevc => crate::hevc::with_frame(payload, use_frame),
    }
}

/// Decode each coded image (one, or a grid's tiles in turn) and hand it to `write` with its
/// placement. Only one tile's picture is alive at a time.
fn for_each_picture(
    coded: Coded,
    policy: &Policy,
    channels: usize,
    mut write: impl FnMut(&Frame<'_>, Placement) -> Result<(), HeifError>,
) -> Result<(), HeifError> {
    match coded {
        Coded::Single(payload) => {
            let (width, height) = (payload.width as usize, payload.height as usize);
            let at = Placement {
                left: 0,
                top: 0,
                visible_width: width,
                visible_height: height,
                out_width: width,
                out_height: height,
                channels,
            };
            with_frame(payload, policy, |frame| write(frame, at))
        }
        Coded::Grid {
            layout,
            tile_width,
            tile_height,
            tiles,
        } => {
            for (i, tile) in tiles.into_iter().enumerate() {
                let (row, column) = (i / layout.columns as usize, i % layout.columns as usize);
                let at = Placement {
                    left: column * tile_width as usize,
                    top: row * tile_height as usize,
                    visible_width: tile_width as usize,
                    visible_height: tile_height as usize,
                    out_width: layout.output_width as usize,
                    out_height: layout.output_height as usize,
                    channels,
                };
                with_frame(tile, policy, |frame| write(frame, at))?;
            }
            Ok(())
        }
    }
}

/// What decoding produced beyond the pixels: the conversion to sRGB the coded stream's
/// colour description asks for, when the container describes no colour (neither `nclx`
/// nor ICC).
pub(crate) struct Decoded {
    pub image: DynamicImage,
    pub stream_cicp: Option<Cicp>,
}

/// Decode the primary image (already checked against the policy by its claimed sizes) to
/// 8-bit RGB, or RGBA when it has an alpha image. Transforms are not applied here.
pub(crate) fn decode(
    format: Format,
    image: heif::Image,
    policy: &Policy,
) -> Result<Decoded, ProcessError> {
    let channels = if image.alpha.is_some() { 4 } else { 3 };
    let needed = u64::from(image.width) * u64::from(image.height) * channels as u64;
    if needed > policy.max_alloc_bytes {
        return Err(ProcessError::MemoryLimit {
            limit: policy.max_alloc_bytes,
        });
    }
    let mut out = vec![0u8; needed as usize];
    let nclx = image.colour.nclx;
    let matrix = nclx.map(|n| Matrix {
        coefficients: n.matrix,
        full_range: n.full_range,
    });
    let described = nclx.is_some() || image.colour.icc.is_some();
    let mut stream_cicp = None;
    for_each_picture(image.coded, policy, channels, |frame, at| {
        if !described && stream_cicp.is_none() {
            stream_cicp = to_convert(frame.stream.primaries, frame.stream.transfer);
        }
        crate::yuv::write_colour(frame, matrix, &mut out, at)
    })
    .map_err(|e| heif_error(format, e))?;
    if let Some(alpha) = image.alpha {
        for_each_picture(alpha, policy, channels, |frame, at| {
            crate::yuv::write_alpha(frame, &mut out, at)
        })
        .map_err(|e| heif_error(format, e))?;
    }
    let (w, h) = (image.width, image.height);
    let image = if channels == 4 {
        RgbaImage::from_raw(w, h, out).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(w, h, out).map(DynamicImage::ImageRgb8)
    }
    .ok_or_else(|| corrupt_in(format, "decoded buffer does not match the header"))?;
    Ok(Decoded { image, stream_cicp })
}

/// Open a HEIF file (`format` is AVIF or HEIC, as sniffed): read its container, check
/// every size it claims (the image, each grid tile, the tiles' total, the alpha image)
/// against the policy, and work out the crop and orientation. Nothing is decoded and
/// nothing is sized from a claim before its check.
pub(crate) fn open<'a>(
    bytes: &'a [u8],
    format: Format,
    policy: &Policy,
) -> Result<OpenImage<'a>, ProcessError> {
    let image = heif::read(bytes).map_err(|e| heif_error(format, e))?;
    for coded in std::iter::once(&image.coded).chain(image.alpha.as_ref()) {
        check_coded(format, coded, policy)?;
    }
    check_dimensions(format, image.width, image.height, policy)?;
    let crop = image.transforms.iter().find_map(|t| match t {
        Transform::Crop(clap) => clap.rectangle(image.width, image.height),
        _ => None,
    });
    let (width, height) = crop.map_or((image.width, image.height), |(_, _, w, h)| (w, h));
    // An ICC profile, when there is one, describes the colour (the nclx box still gives the
    // YUV matrix), as libavif, libheif and browsers read it.
    let cicp = image
        .colour
        .nclx
        .filter(|_| image.colour.icc.is_none())
        .and_then(
            |Nclx {
                 primaries,
                 transfer,
                 ..
             }| to_convert(primaries, transfer),
        );
    Ok(OpenImage {
        header: Header {
            width,
            height,
            // EXIF orientation inside a HEIF file is informative only: `irot` and `imir`
            // say how to display it (applying both would turn an iPhone photo twice).
            orientation: orientation_of(&image.transforms),
            icc_profile: image.colour.icc.clone(),
            cicp,
            frames: image.frames,
        },
        format,
        decoder: Decoder::Heif {
            image: Box::new(image),
            crop,
        },
    })
}

/// Check each coded image's claimed size, and a grid's tiles' total, against the policy.
fn check_coded(format: Format, coded: &heif::Coded, policy: &Policy) -> Result<(), ProcessError> {
    match coded {
        heif::Coded::Single(payload) => {
            check_codec(format, payload)?;
            check_dimensions(format, payload.width, payload.height, policy)
        }
        heif::Coded::Grid {
            layout,
            tile_width,
            tile_height,
            tiles,
        } => {
            check_dimensions(format, layout.output_width, layout.output_height, policy)?;
            check_dimensions(format, *tile_width, *tile_height, policy)?;
            let total = |tile: u32, n: u32| u32::try_from(u64::from(tile) * u64::from(n));
            let (Ok(w), Ok(h)) = (
                total(*tile_width, layout.columns),
                total(*tile_height, layout.rows),
            ) else {
                return Err(ProcessError::DimensionsTooLarge {
                    width: u32::MAX,
                    height: u32::MAX,
                    limit: policy.max_side,
                });
            };
            check_dimensions(format, w, h, policy)?;
            tiles.iter().try_for_each(|tile| check_codec(format, tile))
        }
    }
}

fn check_codec(format: Format, payload: &heif::Payload) -> Result<(), ProcessError> {
    let (name, box_name, valid) = match payload.codec {
        // av1C starts with its marker bit and version 1 (AV1-ISOBMFF 2.3.3).
        CodecKind::Av1 => ("AV1", "av1C", payload.config.first() == Some(&0x81)),
        // hvcC's version is not checked (libheif doesn't either, and old writers vary);
        // its contents are, when its parameter sets are read (`hevc.rs`).
        CodecKind::Hevc => ("HEVC", "hvcC", true),
    };
    if valid {
        Ok(())
    } else {
        Err(corrupt_in(
            format,
            format!("the {name} configuration ('{box_name}') is not version 1"),
        ))
    }
}

fn heif_error(format: Format, error: heif::HeifError) -> ProcessError {
    match error {
        heif::HeifError::Corrupt(reason) => corrupt_in(format, reason),
        heif::HeifError::Unsupported(reason) => ProcessError::UnsupportedFeature { format, reason },
    }
}

/// The conversion a coded image's H.273 primaries and transfer need after YUV→RGB, or
/// `None` for sRGB. "Unspecified" and the BT.709/BT.601 video curves are read as sRGB, as
/// browsers and libavif do.
pub(crate) fn to_convert(primaries: u16, transfer: u16) -> Option<Cicp> {
    let primaries = match primaries {
        2 => 1,
        p => u8::try_from(p).ok()?,
    };
    let transfer = match transfer {
        1 | 2 | 6 | 14 | 15 => 13,
        t => u8::try_from(t).ok()?,
    };
    (primaries, transfer).ne(&(1, 13)).then_some(Cicp {
        primaries,
        transfer,
        matrix: 0,
        full_range: true,
    })
}

/// The EXIF orientation that does what HEIF's rotations (`irot`, anti-clockwise quarter
/// turns) and mirrors (`imir`) do, in their order: found by applying both to a 3×2 probe.
fn orientation_of(transforms: &[Transform]) -> Orientation {
    let probe =
        || DynamicImage::ImageRgb8(RgbImage::from_fn(3, 2, |x, y| Rgb([x as u8, y as u8, 0])));
    let mut moved = probe();
    for transform in transforms {
        moved = match transform {
            Transform::Rotate(1) => moved.rotate270(),
            Transform::Rotate(2) => moved.rotate180(),
            Transform::Rotate(3) => moved.rotate90(),
            Transform::Mirror(0) => moved.fliph(),
            Transform::Mirror(_) => moved.flipv(),
            Transform::Rotate(_) | Transform::Crop(_) => moved,
        };
    }
    const ALL: [Orientation; 8] = [
        Orientation::NoTransforms,
        Orientation::Rotate90,
        Orientation::Rotate180,
        Orientation::Rotate270,
        Orientation::FlipHorizontal,
        Orientation::FlipVertical,
        Orientation::Rotate90FlipH,
        Orientation::Rotate270FlipH,
    ];
    ALL.into_iter()
        .find(|&orientation| {
            let mut candidate = probe();
            candidate.apply_orientation(orientation);
            candidate == moved
        })
        .unwrap_or(Orientation::NoTransforms)
}

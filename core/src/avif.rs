//! AVIF: the HEIF container (`heif.rs`) around AV1, decoded by rav1d (the Rust port of
//! dav1d, built without assembly so every target runs the same code), then converted from
//! YUV to 8-bit RGB(A) here.
//!
//! rav1d does not build for `wasm32-unknown-unknown` (it needs `libc` types that target
//! lacks), so there AVIF is not decoded (see `Format::is_supported`; `build.rs` sets the
//! `avif` cfg everywhere else).

use image::metadata::Orientation;
use image::{DynamicImage, Rgb, RgbImage, RgbaImage};
use re_rav1d::dav1d::{self, Picture, PixelLayout, PlanarImageComponent};

use crate::decode::{Cicp, Decoder, Header, OpenImage, check_dimensions, corrupt as corrupt_in};
use crate::error::ProcessError;
use crate::heif::{self, CodecKind, Coded, Nclx, Payload, Transform};
use crate::policy::Policy;
use crate::sniff::Format;

fn corrupt(reason: impl std::fmt::Display) -> ProcessError {
    ProcessError::CorruptImage {
        format: Format::Avif,
        reason: reason.to_string(),
    }
}

fn unsupported(reason: impl std::fmt::Display) -> ProcessError {
    ProcessError::UnsupportedFeature {
        format: Format::Avif,
        reason: reason.to_string(),
    }
}

/// Decode one AV1 image item. The decoder itself refuses frames larger than the policy's
/// pixel limit before allocating them, and the picture must be the size its `ispe` claimed
/// (which the caller has checked against the policy).
fn decode_payload(payload: Payload, policy: &Policy) -> Result<Picture, ProcessError> {
    let mut settings = dav1d::Settings::new();
    // One thread and no frame delay: no threads to spawn (the core has none), and the
    // picture is ready as soon as its data is in.
    settings.set_n_threads(1);
    settings.set_max_frame_delay(1);
    settings.set_all_layers(false);
    settings.set_frame_size_limit(u32::try_from(policy.max_pixels).unwrap_or(u32::MAX));
    let mut decoder = dav1d::Decoder::with_settings(&settings).map_err(corrupt)?;
    let (width, height) = (payload.width, payload.height);
    let mut pending = decoder.send_data(payload.data, None, None, None);
    // The picture may need the data fed in several goes; each go consumes some of it.
    for _ in 0..64 {
        match decoder.get_picture() {
            Ok(picture) => {
                if (picture.width(), picture.height()) != (width, height) {
                    return Err(corrupt(format!(
                        "the AV1 frame is {}x{} but the file says {width}x{height}",
                        picture.width(),
                        picture.height(),
                    )));
                }
                return Ok(picture);
            }
            Err(e) if e.is_again() => match pending {
                Err(e) if e.is_again() => pending = decoder.send_pending_data(),
                Err(e) => return Err(corrupt(format!("the AV1 stream is invalid: {e}"))),
                Ok(()) => {
                    return Err(corrupt("the AV1 stream ends before a whole frame"));
                }
            },
            Err(e) => return Err(corrupt(format!("the AV1 stream is invalid: {e}"))),
        }
    }
    Err(corrupt("the AV1 stream never produced a frame"))
}

/// The YUV→RGB conversion for one picture: matrix, range and bit depth.
struct Conversion {
    depth: u32,
    /// (kr, kb) of the matrix; `None` for the identity (GBR) matrix.
    weights: Option<(f32, f32)>,
    full_range: bool,
}

impl Conversion {
    fn new(picture: &Picture, nclx: Option<Nclx>) -> Result<Self, ProcessError> {
        let (matrix, full_range) = match nclx {
            Some(nclx) => (nclx.matrix, nclx.full_range),
            None => (
                picture.matrix_coefficients() as u16,
                matches!(picture.color_range(), dav1d::pixel::YUVRange::Full),
            ),
        };
        let weights = match matrix {
            0 => None,
            1 => Some((0.2126, 0.0722)),
            // Unspecified, as libavif and browsers read it: BT.601.
            2 | 5 | 6 => Some((0.299, 0.114)),
            4 => Some((0.30, 0.11)),
            7 => Some((0.212, 0.087)),
            9 | 10 => Some((0.2627, 0.0593)),
            other => return Err(unsupported(format!("YUV matrix coefficients {other}"))),
        };
        Ok(Conversion {
            depth: picture.bit_depth() as u32,
            weights,
            full_range,
        })
    }

    /// A luma (or alpha, or GBR) sample, normalised to 0..=1, in floating point
    /// throughout (libavif's exact path; its fixed-point fast paths differ by a level or
    /// two).
    fn luma(&self, s: u32) -> f32 {
        let d = self.depth;
        if self.full_range {
            s as f32 / ((1u32 << d) - 1) as f32
        } else {
            let scale = (1u32 << (d - 8)) as f32;
            (s as f32 - 16.0 * scale) / (219.0 * scale)
        }
    }

    /// A chroma sample, normalised to -0.5..=0.5.
    fn chroma(&self, s: u32) -> f32 {
        let d = self.depth;
        if self.full_range {
            (s as f32 - (1u32 << (d - 1)) as f32) / ((1u32 << d) - 1) as f32
        } else {
            let scale = (1u32 << (d - 8)) as f32;
            (s as f32 - 128.0 * scale) / (224.0 * scale)
        }
    }

    /// 8-bit RGB from one pixel's luma sample and normalised chroma (for the identity
    /// matrix, normalised as luma: GBR carries green in Y, blue in U, red in V).
    fn rgb(&self, y: u32, un: f32, vn: f32) -> [u8; 3] {
        let (r, g, b) = match self.weights {
            None => (vn, self.luma(y), un),
            Some((kr, kb)) => {
                let yn = self.luma(y);
                let kg = 1.0 - kr - kb;
                let r = yn + (2.0 - 2.0 * kr) * vn;
                let b = yn + (2.0 - 2.0 * kb) * un;
                let g = yn - (kr * (2.0 - 2.0 * kr) * vn + kb * (2.0 - 2.0 * kb) * un) / kg;
                (r, g, b)
            }
        };
        [to_8bit(r), to_8bit(g), to_8bit(b)]
    }

    /// 8-bit gray from a monochrome picture's luma, whatever the matrix.
    fn gray(&self, y: u32) -> [u8; 3] {
        [to_8bit(self.luma(y)); 3]
    }
}

fn to_8bit(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// One plane's samples, 8 or 16 bits each.
struct Plane {
    data: dav1d::Plane,
    stride: usize,
    wide: bool,
    width: usize,
    height: usize,
}

impl Plane {
    fn new(picture: &Picture, component: PlanarImageComponent, width: u32, height: u32) -> Self {
        Plane {
            data: picture.plane(component),
            stride: picture.stride(component) as usize,
            wide: picture.bit_depth() > 8,
            width: width as usize,
            height: height as usize,
        }
    }

    /// The sample at (x, y), clamped to the plane (so neighbours at the edges repeat).
    fn at(&self, x: isize, y: isize) -> u32 {
        let x = x.clamp(0, self.width as isize - 1) as usize;
        let y = y.clamp(0, self.height as isize - 1) as usize;
        if self.wide {
            let i = y * self.stride + x * 2;
            match self.data.get(i..i + 2) {
                Some(b) => u32::from(u16::from_le_bytes([b[0], b[1]])),
                None => 0,
            }
        } else {
            self.data
                .get(y * self.stride + x)
                .map_or(0, |&b| u32::from(b))
        }
    }
}

/// Chroma at a luma position, normalised by `norm` sample by sample, then upsampled
/// bilinearly (weights 9:3:3:1; 3:1 across for 4:2:2), as libavif's best-quality
/// conversion does.
fn chroma(
    plane: &Plane,
    x: usize,
    y: usize,
    (sub_x, sub_y): (bool, bool),
    norm: impl Fn(u32) -> f32,
) -> f32 {
    let (cx, cy) = (
        (if sub_x { x / 2 } else { x }) as isize,
        (if sub_y { y / 2 } else { y }) as isize,
    );
    let near = |odd: bool| if odd { 1 } else { -1 };
    let at = |dx: isize, dy: isize| norm(plane.at(cx + dx, cy + dy));
    match (sub_x, sub_y) {
        (false, false) => at(0, 0),
        (true, false) => {
            let dx = near(x % 2 == 1);
            at(0, 0) * 0.75 + at(dx, 0) * 0.25
        }
        (false, true) => {
            let dy = near(y % 2 == 1);
            at(0, 0) * 0.75 + at(0, dy) * 0.25
        }
        (true, true) => {
            let (dx, dy) = (near(x % 2 == 1), near(y % 2 == 1));
            at(0, 0) * (9.0 / 16.0)
                + at(dx, 0) * (3.0 / 16.0)
                + at(0, dy) * (3.0 / 16.0)
                + at(dx, dy) * (1.0 / 16.0)
        }
    }
}

/// Where a decoded picture goes in the output: its top-left corner and the output's size
/// (pixels past the output's edges, in a grid's last row and column, are dropped).
#[derive(Clone, Copy)]
struct Placement {
    left: usize,
    top: usize,
    out_width: usize,
    out_height: usize,
    channels: usize,
}

fn write_colour(
    picture: &Picture,
    nclx: Option<Nclx>,
    out: &mut [u8],
    at: Placement,
) -> Result<(), ProcessError> {
    let conversion = Conversion::new(picture, nclx)?;
    let (w, h) = (picture.width(), picture.height());
    let layout = picture.pixel_layout();
    let (sub_x, sub_y) = match layout {
        PixelLayout::I420 => (true, true),
        PixelLayout::I422 => (true, false),
        PixelLayout::I444 | PixelLayout::I400 => (false, false),
    };
    let (cw, ch) = (
        if sub_x { w.div_ceil(2) } else { w },
        if sub_y { h.div_ceil(2) } else { h },
    );
    let y_plane = Plane::new(picture, PlanarImageComponent::Y, w, h);
    let chroma_planes = (layout != PixelLayout::I400).then(|| {
        (
            Plane::new(picture, PlanarImageComponent::U, cw, ch),
            Plane::new(picture, PlanarImageComponent::V, cw, ch),
        )
    });
    let rows = (h as usize).min(at.out_height.saturating_sub(at.top));
    let cols = (w as usize).min(at.out_width.saturating_sub(at.left));
    for y in 0..rows {
        let row_start = ((at.top + y) * at.out_width + at.left) * at.channels;
        let Some(row) = out.get_mut(row_start..row_start + cols * at.channels) else {
            return Err(corrupt("a tile lies outside the image"));
        };
        for (x, pixel) in row.chunks_exact_mut(at.channels).enumerate() {
            let luma = y_plane.at(x as isize, y as isize);
            let rgb = match &chroma_planes {
                Some((u, v)) => {
                    let sub = (sub_x, sub_y);
                    let (un, vn) = if conversion.weights.is_some() {
                        let norm = |s| conversion.chroma(s);
                        (chroma(u, x, y, sub, norm), chroma(v, x, y, sub, norm))
                    } else {
                        let norm = |s| conversion.luma(s);
                        (chroma(u, x, y, sub, norm), chroma(v, x, y, sub, norm))
                    };
                    conversion.rgb(luma, un, vn)
                }
                // Monochrome: gray, whatever the matrix.
                None => conversion.gray(luma),
            };
            pixel[..3].copy_from_slice(&rgb);
        }
    }
    Ok(())
}

fn write_alpha(picture: &Picture, out: &mut [u8], at: Placement) -> Result<(), ProcessError> {
    let conversion = Conversion {
        depth: picture.bit_depth() as u32,
        weights: None,
        full_range: matches!(picture.color_range(), dav1d::pixel::YUVRange::Full),
    };
    let (w, h) = (picture.width(), picture.height());
    let plane = Plane::new(picture, PlanarImageComponent::Y, w, h);
    let rows = (h as usize).min(at.out_height.saturating_sub(at.top));
    let cols = (w as usize).min(at.out_width.saturating_sub(at.left));
    for y in 0..rows {
        let row_start = ((at.top + y) * at.out_width + at.left) * at.channels;
        let Some(row) = out.get_mut(row_start..row_start + cols * at.channels) else {
            return Err(corrupt("a tile lies outside the image"));
        };
        for (x, pixel) in row.chunks_exact_mut(at.channels).enumerate() {
            pixel[3] = to_8bit(conversion.luma(plane.at(x as isize, y as isize)));
        }
    }
    Ok(())
}

/// Decode each coded image (one, or a grid's tiles in turn) and hand it to `write` with its
/// placement. Only one tile's picture is alive at a time.
fn for_each_picture(
    coded: Coded,
    policy: &Policy,
    channels: usize,
    mut write: impl FnMut(&Picture, Placement) -> Result<(), ProcessError>,
) -> Result<(), ProcessError> {
    match coded {
        Coded::Single(payload) => {
            let (out_width, out_height) = (payload.width as usize, payload.height as usize);
            let picture = decode_payload(payload, policy)?;
            write(
                &picture,
                Placement {
                    left: 0,
                    top: 0,
                    out_width,
                    out_height,
                    channels,
                },
            )
        }
        Coded::Grid {
            layout,
            tile_width,
            tile_height,
            tiles,
        } => {
            for (i, tile) in tiles.into_iter().enumerate() {
                let (row, column) = (i / layout.columns as usize, i % layout.columns as usize);
                let picture = decode_payload(tile, policy)?;
                write(
                    &picture,
                    Placement {
                        left: column * tile_width as usize,
                        top: row * tile_height as usize,
                        out_width: layout.output_width as usize,
                        out_height: layout.output_height as usize,
                        channels,
                    },
                )?;
            }
            Ok(())
        }
    }
}

/// What decoding produced beyond the pixels: the conversion to sRGB the AV1 stream's colour
/// description asks for, when the container describes no colour (neither `nclx` nor ICC).
pub(crate) struct Decoded {
    pub image: DynamicImage,
    pub stream_cicp: Option<Cicp>,
}

/// Decode the primary image (already checked against the policy by its claimed sizes) to
/// 8-bit RGB, or RGBA when it has an alpha image. Transforms are not applied here.
pub(crate) fn decode(image: heif::Image, policy: &Policy) -> Result<Decoded, ProcessError> {
    let channels = if image.alpha.is_some() { 4 } else { 3 };
    let needed = u64::from(image.width) * u64::from(image.height) * channels as u64;
    if needed > policy.max_alloc_bytes {
        return Err(ProcessError::MemoryLimit {
            limit: policy.max_alloc_bytes,
        });
    }
    let mut out = vec![0u8; needed as usize];
    let nclx = image.colour.nclx;
    let described = nclx.is_some() || image.colour.icc.is_some();
    let mut stream_cicp = None;
    for_each_picture(image.coded, policy, channels, |picture, at| {
        if !described && stream_cicp.is_none() {
            stream_cicp = to_convert(
                picture.color_primaries() as u16,
                picture.transfer_characteristic() as u16,
            );
        }
        write_colour(picture, nclx, &mut out, at)
    })?;
    if let Some(alpha) = image.alpha {
        for_each_picture(alpha, policy, channels, |picture, at| {
            write_alpha(picture, &mut out, at)
        })?;
    }
    let (w, h) = (image.width, image.height);
    let image = if channels == 4 {
        RgbaImage::from_raw(w, h, out).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(w, h, out).map(DynamicImage::ImageRgb8)
    }
    .ok_or_else(|| corrupt("decoded buffer does not match the header"))?;
    Ok(Decoded { image, stream_cicp })
}

/// Open an AVIF: read its container, check every size it claims (the image, each grid
/// tile, the tiles' total, the alpha image) against the policy, and work out the crop and
/// orientation. Nothing is decoded and nothing is sized from a claim before its check.
pub(crate) fn open<'a>(bytes: &'a [u8], policy: &Policy) -> Result<OpenImage<'a>, ProcessError> {
    let image = heif::read(bytes).map_err(|e| heif_error(Format::Avif, e))?;
    for coded in std::iter::once(&image.coded).chain(image.alpha.as_ref()) {
        check_coded(Format::Avif, coded, policy)?;
    }
    check_dimensions(Format::Avif, image.width, image.height, policy)?;
    let crop = image.transforms.iter().find_map(|t| match t {
        Transform::Crop(clap) => clap.rectangle(image.width, image.height),
        _ => None,
    });
    let (width, height) = crop.map_or((image.width, image.height), |(_, _, w, h)| (w, h));
    // An ICC profile, when there is one, describes the colour (the nclx box still gives the
    // YUV matrix), as libavif and browsers read it.
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
        format: Format::Avif,
        decoder: Decoder::Avif {
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
    match (format, payload.codec) {
        // av1C starts with its marker bit and version 1 (AV1-ISOBMFF 2.3.3).
        (Format::Avif, CodecKind::Av1) if payload.config.first() == Some(&0x81) => Ok(()),
        (Format::Avif, CodecKind::Av1) => Err(corrupt_in(
            format,
            "the AV1 configuration ('av1C') is not version 1",
        )),
        (_, codec) => Err(ProcessError::UnsupportedFeature {
            format,
            reason: format!("{codec:?} coded images in a {format} file"),
        }),
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

//! YUV (as AV1 and HEVC decoders hand it out) to 8-bit RGB(A): one conversion for every
//! codec, in floating point with bilinear chroma upsampling, so an AVIF and a HEIC of the
//! same picture come out the same.

use crate::heif::{HeifError, corrupt, unsupported};

/// How a decoder stores one plane's samples.
#[derive(Clone, Copy)]
pub(crate) enum Samples<'a> {
    /// One byte per sample (8-bit pictures).
    Bytes(&'a [u8]),
    /// Two little-endian bytes per sample (rav1d's 10- and 12-bit pictures).
    Le16(&'a [u8]),
    /// One `u16` per sample.
    Words(&'a [u16]),
}

/// One plane of a decoded picture. `stride` counts samples, not bytes.
#[derive(Clone, Copy)]
pub(crate) struct Plane<'a> {
    pub samples: Samples<'a>,
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl Plane<'_> {
    /// The sample at index `i` (row × stride + column). A plane shorter than it claims
    /// reads as zeros rather than panicking (`check_planes` refuses such planes first).
    fn sample(&self, i: usize) -> u32 {
        match self.samples {
            Samples::Bytes(b) => b.get(i).map_or(0, |&s| u32::from(s)),
            Samples::Le16(b) => b
                .get(2 * i..2 * i + 2)
                .map_or(0, |s| u32::from(u16::from_le_bytes([s[0], s[1]]))),
            Samples::Words(w) => w.get(i).map_or(0, |&s| u32::from(s)),
        }
    }

    /// Row `row` (clamped to the plane, so neighbours at the edges repeat), each sample
    /// normalised by `norm`, into `into`.
    fn normalised_row(&self, row: isize, norm: impl Fn(u32) -> f32, into: &mut Vec<f32>) {
        let y = row.clamp(0, self.height as isize - 1) as usize;
        into.clear();
        into.extend((0..self.width).map(|x| norm(self.sample(y * self.stride + x))));
    }
}

/// The colour description a coded stream carries (AV1 sequence header, HEVC VUI), H.273
/// code points. The container's `nclx`, when there is one, wins over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamColour {
    pub primaries: u16,
    pub transfer: u16,
    pub matrix: u16,
    pub full_range: bool,
}

/// How chroma is sampled relative to luma.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chroma {
    Monochrome,
    Yuv420,
    Yuv422,
    Yuv444,
}

/// A decoded picture, borrowed from its decoder.
pub(crate) struct Frame<'a> {
    pub width: u32,
    pub height: u32,
    pub depth: u32,
    pub chroma: Chroma,
    /// Y, then U and V (unused for monochrome).
    pub planes: [Plane<'a>; 3],
    pub stream: StreamColour,
}

/// The matrix and range the container's `nclx` gives, overriding the stream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Matrix {
    pub coefficients: u16,
    pub full_range: bool,
}

/// The YUV→RGB conversion for one picture: matrix, range and bit depth.
struct Conversion {
    depth: u32,
    /// (kr, kb) of the matrix; `None` for the identity (GBR) matrix.
    weights: Option<(f32, f32)>,
    full_range: bool,
}

impl Conversion {
    fn new(depth: u32, matrix: Matrix) -> Result<Self, HeifError> {
        if !(8..=16).contains(&depth) {
            return Err(unsupported(format!("{depth}-bit samples")));
        }
        let weights = match matrix.coefficients {
            0 => None,
            1 => Some((0.2126, 0.0722)),
            // Unspecified, as libavif, libheif and browsers read it: BT.601.
            2 | 5 | 6 => Some((0.299, 0.114)),
            4 => Some((0.30, 0.11)),
            7 => Some((0.212, 0.087)),
            9 | 10 => Some((0.2627, 0.0593)),
            other => return Err(unsupported(format!("YUV matrix coefficients {other}"))),
        };
        Ok(Conversion {
            depth,
            weights,
            full_range: matrix.full_range,
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

/// Where a decoded picture goes in the output: its top-left corner, the part of it that is
/// the image (its `ispe` size: coded pictures may be padded past it), and the output's size
/// (pixels past the output's edges, in a grid's last row and column, are dropped).
#[derive(Clone, Copy)]
pub(crate) struct Placement {
    pub left: usize,
    pub top: usize,
    pub visible_width: usize,
    pub visible_height: usize,
    pub out_width: usize,
    pub out_height: usize,
    pub channels: usize,
}

impl Placement {
    /// The output rows this picture covers, as (row index in the picture, the row's pixels).
    fn rows<'o>(
        &self,
        frame: &Frame<'_>,
        out: &'o mut [u8],
    ) -> Result<Vec<(usize, &'o mut [u8])>, HeifError> {
        let rows = (frame.height as usize)
            .min(self.visible_height)
            .min(self.out_height.saturating_sub(self.top));
        let cols = (frame.width as usize)
            .min(self.visible_width)
            .min(self.out_width.saturating_sub(self.left));
        let line = self.out_width * self.channels;
        let start = self.top * line;
        let Some(region) = out.get_mut(start..start + rows * line) else {
            return Err(corrupt("a tile lies outside the image"));
        };
        let from = self.left * self.channels;
        let to = from + cols * self.channels;
        region
            .chunks_exact_mut(line)
            .enumerate()
            .map(|(y, row)| {
                row.get_mut(from..to)
                    .map(|pixels| (y, pixels))
                    .ok_or_else(|| corrupt("a tile lies outside the image"))
            })
            .collect()
    }
}

/// Convert `frame` to RGB into `out` (3 or 4 channels; alpha is left alone), with the
/// container's matrix and range when it gave them, the stream's otherwise.
///
/// Chroma is upsampled bilinearly with chroma sited at the centre of its luma samples
/// (weights 9:3:3:1; 3:1 across for 4:2:2), as libavif's best-quality conversion and
/// libheif's bilinear one do. Each output row normalises the two chroma rows it reads once,
/// then mixes them per pixel.
pub(crate) fn write_colour(
    frame: &Frame<'_>,
    container: Option<Matrix>,
    out: &mut [u8],
    at: Placement,
) -> Result<(), HeifError> {
    let matrix = container.unwrap_or(Matrix {
        coefficients: frame.stream.matrix,
        full_range: frame.stream.full_range,
    });
    let conversion = Conversion::new(frame.depth, matrix)?;
    let (sub_x, sub_y) = match frame.chroma {
        Chroma::Yuv420 => (true, true),
        Chroma::Yuv422 => (true, false),
        Chroma::Yuv444 | Chroma::Monochrome => (false, false),
    };
    // For the identity (GBR) matrix, U and V carry colours and are normalised as luma.
    let norm = |s| {
        if conversion.weights.is_some() {
            conversion.chroma(s)
        } else {
            conversion.luma(s)
        }
    };
    // The nearer neighbour: chroma sited at the centre lies after an odd luma position and
    // before an even one.
    let near = |odd: bool| if odd { 1 } else { -1 };
    let [y_plane, u, v] = &frame.planes;
    let (mut u_near, mut u_far, mut v_near, mut v_far) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (y, row) in at.rows(frame, out)? {
        let luma_row = y * y_plane.stride;
        if frame.chroma == Chroma::Monochrome {
            for (x, pixel) in row.chunks_exact_mut(at.channels).enumerate() {
                let luma = y_plane.sample(luma_row + x);
                pixel[..3].copy_from_slice(&conversion.gray(luma));
            }
            continue;
        }
        let cy = (if sub_y { y / 2 } else { y }) as isize;
        u.normalised_row(cy, norm, &mut u_near);
        v.normalised_row(cy, norm, &mut v_near);
        if sub_y {
            let dy = near(y % 2 == 1);
            u.normalised_row(cy + dy, norm, &mut u_far);
            v.normalised_row(cy + dy, norm, &mut v_far);
        }
        let last = u.width.saturating_sub(1);
        let mix = |near_row: &[f32], far_row: &[f32], cx: usize, cxn: usize| -> f32 {
            let at = |r: &[f32], i: usize| r.get(i).copied().unwrap_or(0.0);
            match (sub_x, sub_y) {
                (false, false) => at(near_row, cx),
                (true, false) => at(near_row, cx) * 0.75 + at(near_row, cxn) * 0.25,
                (false, true) => at(near_row, cx) * 0.75 + at(far_row, cx) * 0.25,
                (true, true) => {
                    at(near_row, cx) * (9.0 / 16.0)
                        + at(near_row, cxn) * (3.0 / 16.0)
                        + at(far_row, cx) * (3.0 / 16.0)
                        + at(far_row, cxn) * (1.0 / 16.0)
                }
            }
        };
        for (x, pixel) in row.chunks_exact_mut(at.channels).enumerate() {
            let luma = y_plane.sample(luma_row + x);
            let cx = (if sub_x { x / 2 } else { x }).min(last);
            let cxn = if sub_x {
                (cx as isize + near(x % 2 == 1)).clamp(0, last as isize) as usize
            } else {
                cx
            };
            let un = mix(&u_near, &u_far, cx, cxn);
            let vn = mix(&v_near, &v_far, cx, cxn);
            pixel[..3].copy_from_slice(&conversion.rgb(luma, un, vn));
        }
    }
    Ok(())
}

/// Write an alpha image's luma into channel 3 of `out`. Alpha is always full range,
/// whatever its stream says (as libavif 1.x and libheif read it).
pub(crate) fn write_alpha(
    frame: &Frame<'_>,
    out: &mut [u8],
    at: Placement,
) -> Result<(), HeifError> {
    let conversion = Conversion::new(
        frame.depth,
        Matrix {
            coefficients: 0,
            full_range: true,
        },
    )?;
    let plane = &frame.planes[0];
    for (y, row) in at.rows(frame, out)? {
        for (x, pixel) in row.chunks_exact_mut(at.channels).enumerate() {
            if let Some(alpha) = pixel.get_mut(3) {
                *alpha = to_8bit(conversion.luma(plane.sample(y * plane.stride + x)));
            }
        }
    }
    Ok(())
}

/// Error out unless a plane holds at least what its size claims, so a decoder handing out
/// a short plane is caught here rather than read as zeros.
pub(crate) fn check_planes(frame: &Frame<'_>) -> Result<(), HeifError> {
    let count = if frame.chroma == Chroma::Monochrome {
        1
    } else {
        3
    };
    for plane in &frame.planes[..count] {
        let len = match plane.samples {
            Samples::Bytes(b) => b.len(),
            Samples::Le16(b) => b.len() / 2,
            Samples::Words(w) => w.len(),
        };
        let needed = plane
            .height
            .checked_sub(1)
            .map_or(0, |rows| rows * plane.stride + plane.width);
        if plane.width == 0 || plane.height == 0 || len < needed || plane.stride < plane.width {
            return Err(corrupt(
                "the decoder returned a plane smaller than its size",
            ));
        }
    }
    Ok(())
}

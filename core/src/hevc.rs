//! HEVC (HEIC's codec), decoded by `heifer-hevc-dec`: a pure-Rust intra decoder with no
//! `unsafe` and no dependencies. Only `heif_image.rs` calls this.
//!
//! HEIF stores an image's parameter sets in its `hvcC` property and its slices as
//! length-prefixed NAL units; the decoder reads an Annex B byte stream, so both are joined
//! here behind start codes (a copy as large as the item's data, already bounded by the
//! file's size).

use heifer_hevc_dec::decoder::{DecodeOptions, decode_picture};

use crate::heif::{HeifError, Payload, corrupt, unsupported};
use crate::yuv::{Chroma, Frame, Plane, Samples, StreamColour};

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Decode one HEVC image item and hand its picture to `use_frame`. The decoder refuses a
/// picture larger than the item's `ispe` (rounded up to whole 64-sample blocks, as coded
/// pictures may be) before allocating it; the caller has checked `ispe` against the policy.
pub(crate) fn with_frame<T>(
    payload: Payload,
    use_frame: impl FnOnce(&Frame<'_>) -> Result<T, HeifError>,
) -> Result<T, HeifError> {
    let stream = annex_b(&payload.config, &payload.data)?;
    let padded = |side: u32| u64::from(side.div_ceil(64)) * 64;
    let options = DecodeOptions {
        skip_loop_filters: false,
        verify_hash: false,
        max_pixels: padded(payload.width) * padded(payload.height),
    };
    let decoded = decode_picture(&stream, options)
        .map_err(|e| corrupt(format!("the HEVC stream is invalid: {e}")))?;
    let [luma_depth, chroma_depth] = decoded.bit_depth;
    let chroma = match decoded.chroma_format {
        0 => Chroma::Monochrome,
        1 => Chroma::Yuv420,
        2 => Chroma::Yuv422,
        3 => Chroma::Yuv444,
        other => return Err(corrupt(format!("HEVC chroma format {other}"))),
    };
    if chroma != Chroma::Monochrome && luma_depth != chroma_depth {
        return Err(unsupported(format!(
            "HEVC with {luma_depth}-bit luma and {chroma_depth}-bit chroma"
        )));
    }
    let (width, height) = (decoded.widths[0], decoded.heights[0]);
    if width < payload.width || height < payload.height {
        return Err(corrupt(format!(
            "the HEVC picture is {width}x{height} but the file says {}x{}",
            payload.width, payload.height
        )));
    }
    let plane = |i: usize| Plane {
        samples: Samples::Words(&decoded.planes[i]),
        stride: decoded.widths[i] as usize,
        width: decoded.widths[i] as usize,
        height: decoded.heights[i] as usize,
    };
    let frame = Frame {
        width,
        height,
        depth: u32::from(luma_depth),
        chroma,
        planes: if chroma == Chroma::Monochrome {
            [plane(0); 3]
        } else {
            [plane(0), plane(1), plane(2)]
        },
        // The decoder reads the matrix and range from the VUI; primaries and transfer
        // come from the container (HEIF writers put them in `colr`), so they read as
        // unspecified (sRGB) here.
        stream: StreamColour {
            primaries: 2,
            transfer: 2,
            matrix: u16::from(decoded.matrix_coeffs),
            full_range: decoded.full_range,
        },
    };
    crate::yuv::check_planes(&frame)?;
    use_frame(&frame)
}

/// The parameter sets from `hvcC` (ISO/IEC 14496-15, 8.3.3.1) and the length-prefixed NAL
/// units of the item's data, as one Annex B byte stream.
fn annex_b(config: &[u8], data: &[u8]) -> Result<Vec<u8>, HeifError> {
    let truncated = || corrupt("the HEVC configuration ('hvcC') is truncated");
    let length_size = usize::from(config.get(21).ok_or_else(truncated)? & 3) + 1;
    let arrays = *config.get(22).ok_or_else(truncated)?;
    let mut out = Vec::with_capacity(config.len() + data.len() + 64);
    let mut at = 23;
    for _ in 0..arrays {
        let header = config.get(at..at + 3).ok_or_else(truncated)?;
        let count = u16::from_be_bytes([header[1], header[2]]);
        at += 3;
        for _ in 0..count {
            let len = config.get(at..at + 2).ok_or_else(truncated)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let unit = config.get(at + 2..at + 2 + len).ok_or_else(truncated)?;
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(unit);
            at += 2 + len;
        }
    }
    let mut rest = data;
    while !rest.is_empty() {
        let (prefix, tail) = rest
            .split_at_checked(length_size)
            .ok_or_else(|| corrupt("the HEVC data ends inside a NAL unit's length"))?;
        let len = prefix
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        let (unit, tail) = tail
            .split_at_checked(len)
            .ok_or_else(|| corrupt("a NAL unit runs past the end of the HEVC data"))?;
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(unit);
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `hvcC` with one array of the given NAL units and 4-byte lengths.
    fn hvcc(units: &[&[u8]]) -> Vec<u8> {
        let mut c = vec![0u8; 21];
        c.push(0xFC | 3);
        c.push(1);
        c.push(0x20);
        c.extend_from_slice(&(units.len() as u16).to_be_bytes());
        for u in units {
            c.extend_from_slice(&(u.len() as u16).to_be_bytes());
            c.extend_from_slice(u);
        }
        c
    }

    #[test]
    fn parameter_sets_and_slices_are_joined_behind_start_codes() {
        let data = [0, 0, 0, 2, 0x26, 0x01, 0, 0, 0, 1, 0x99];
        let stream = annex_b(&hvcc(&[&[0x40, 0x01], &[0x42]]), &data).unwrap();
        assert_eq!(
            stream,
            [
                0, 0, 0, 1, 0x40, 0x01, 0, 0, 0, 1, 0x42, 0, 0, 0, 1, 0x26, 0x01, 0, 0, 0, 1, 0x99
            ]
        );
    }

    #[test]
    fn lengths_past_the_end_are_corrupt_not_panics() {
        let config = hvcc(&[&[0x40]]);
        assert!(annex_b(&config[..config.len() - 1], &[]).is_err());
        assert!(annex_b(&config, &[0, 0, 0, 9, 1]).is_err());
        assert!(annex_b(&config, &[0, 0]).is_err());
        assert!(annex_b(&config[..10], &[]).is_err());
    }
}

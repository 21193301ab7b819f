//! AV1 (AVIF's codec), decoded by rav1d, the Rust port of dav1d, built without assembly
//! so every target runs the same code. Only `heif_image.rs` calls this.

use re_rav1d::dav1d::{self, Picture, PixelLayout, PlanarImageComponent};

use crate::heif::{HeifError, Payload, corrupt};
use crate::policy::Policy;
use crate::yuv::{Chroma, Frame, Plane, Samples, StreamColour};

/// Decode one AV1 image item and hand its picture to `use_frame`. The decoder refuses
/// frames larger than the policy's pixel limit before allocating them, and the picture
/// must be the size its `ispe` claimed (which the caller has checked against the policy).
pub(crate) fn with_frame<T>(
    payload: Payload,
    policy: &Policy,
    use_frame: impl FnOnce(&Frame<'_>) -> Result<T, HeifError>,
) -> Result<T, HeifError> {
    let picture = decode(payload, policy)?;
    let (w, h) = (picture.width(), picture.height());
    let chroma = match picture.pixel_layout() {
        PixelLayout::I400 => Chroma::Monochrome,
        PixelLayout::I420 => Chroma::Yuv420,
        PixelLayout::I422 => Chroma::Yuv422,
        PixelLayout::I444 => Chroma::Yuv444,
    };
    let (cw, ch) = match chroma {
        Chroma::Yuv420 => (w.div_ceil(2), h.div_ceil(2)),
        Chroma::Yuv422 => (w.div_ceil(2), h),
        Chroma::Yuv444 | Chroma::Monochrome => (w, h),
    };
    let y = picture.plane(PlanarImageComponent::Y);
    // rav1d has no chroma planes for monochrome pictures (asking for one panics).
    let uv = (chroma != Chroma::Monochrome).then(|| {
        (
            picture.plane(PlanarImageComponent::U),
            picture.plane(PlanarImageComponent::V),
        )
    });
    let view = |data, component, width, height| plane(&picture, data, component, width, height);
    let y_view = view(&y, PlanarImageComponent::Y, w, h);
    let planes = match &uv {
        Some((u, v)) => [
            y_view,
            view(u, PlanarImageComponent::U, cw, ch),
            view(v, PlanarImageComponent::V, cw, ch),
        ],
        None => [y_view; 3],
    };
    let frame = Frame {
        width: w,
        height: h,
        depth: picture.bit_depth() as u32,
        chroma,
        planes,
        stream: StreamColour {
            primaries: picture.color_primaries() as u16,
            transfer: picture.transfer_characteristic() as u16,
            matrix: picture.matrix_coefficients() as u16,
            full_range: matches!(picture.color_range(), dav1d::pixel::YUVRange::Full),
        },
    };
    crate::yuv::check_planes(&frame)?;
    use_frame(&frame)
}

/// A view of one of `picture`'s planes (rav1d's strides are in bytes).
fn plane<'a>(
    picture: &Picture,
    data: &'a [u8],
    component: PlanarImageComponent,
    width: u32,
    height: u32,
) -> Plane<'a> {
    let stride = picture.stride(component) as usize;
    let wide = picture.bit_depth() > 8;
    Plane {
        samples: if wide {
            Samples::Le16(data)
        } else {
            Samples::Bytes(data)
        },
        stride: if wide { stride / 2 } else { stride },
        width: width as usize,
        height: height as usize,
    }
}

fn decode(payload: Payload, policy: &Policy) -> Result<Picture, HeifError> {
    let mut settings = dav1d::Settings::new();
    // One thread and no frame delay: no threads to spawn (the core has none), and the
    // picture is ready as soon as its data is in.
    settings.set_n_threads(1);
    settings.set_max_frame_delay(1);
    settings.set_all_layers(false);
    settings.set_frame_size_limit(u32::try_from(policy.max_pixels).unwrap_or(u32::MAX));
    let mut decoder =
        dav1d::Decoder::with_settings(&settings).map_err(|e| corrupt(e.to_string()))?;
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
                Ok(()) => return Err(corrupt("the AV1 stream ends before a whole frame")),
            },
            Err(e) => return Err(corrupt(format!("the AV1 stream is invalid: {e}"))),
        }
    }
    Err(corrupt("the AV1 stream never produced a frame"))
}

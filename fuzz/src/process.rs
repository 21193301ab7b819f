//! `imgsvc_core::process` under a tight policy (so each run is milliseconds).
//!
//! Asserts, for `Ok`: the source facts obey the policy (sides, pixels, frames, bytes) and
//! agree with `probe` and `sniff`; both outputs are WebP files that decode (image crate) to
//! exactly the sizes reported; the display fits inside 2048×2048, is never larger than the
//! oriented source and keeps its aspect ratio (±1 px of rounding); the thumbnail is
//! 400×400; the ThumbHash decodes. For `Err`: a typed refusal of the input (never
//! `internal`/`encode_failed`), `too_large` exactly when the input is over the byte limit.

use imgsvc_core::{DISPLAY_MAX_SIDE, Policy, ProcessError, THUMBNAIL_SIDE};

/// The fuzzing policy: the service's defaults tightened to a 1 Mpx, 256 KiB world. The
/// frame count is the service's (no limit: frames are counted without decoding them), so
/// the fuzzer exercises the same count the service runs.
pub fn policy() -> Policy {
    Policy::default().tightened_by(Policy {
        max_input_bytes: 256 * 1024,
        max_side: 4096,
        max_pixels: 1 << 20,
        max_frames: Policy::DEFAULT_MAX_FRAMES,
        max_alloc_bytes: 64 << 20,
    })
}

pub fn check(data: &[u8]) {
    let policy = policy();
    match imgsvc_core::process(data, &policy) {
        Ok(processed) => check_processed(data, &policy, &processed),
        Err(error) => {
            crate::probe::assert_refusal(data, &error);
            assert_eq!(
                matches!(error, ProcessError::TooLarge { .. }),
                data.len() as u64 > policy.max_input_bytes,
                "too_large iff over the byte limit: {error}"
            );
        }
    }
}

/// The contract of one successful `process`; also used by the tests with other policies.
pub fn check_processed(data: &[u8], policy: &Policy, processed: &imgsvc_core::Processed) {
    let source = &processed.source;
    assert_eq!(source.bytes, data.len() as u64);
    assert!(source.bytes <= policy.max_input_bytes);
    assert!(source.format.is_supported());
    assert_eq!(imgsvc_core::sniff(data), source.format);
    assert!(source.width >= 1 && source.height >= 1, "{source:?}");
    assert!(source.width <= policy.max_side && source.height <= policy.max_side);
    assert!(u64::from(source.width) * u64::from(source.height) <= policy.max_pixels);
    assert!(source.frames >= 1 && source.frames <= policy.max_frames);
    assert!((1..=8).contains(&source.orientation));
    let (ow, oh) = if source.orientation >= 5 {
        (source.height, source.width)
    } else {
        (source.width, source.height)
    };
    assert_eq!((source.oriented_width, source.oriented_height), (ow, oh));
    match imgsvc_core::probe(data) {
        Ok(probe) => {
            assert_eq!(
                (
                    probe.format,
                    probe.width,
                    probe.height,
                    probe.orientation,
                    probe.frames
                ),
                (
                    source.format,
                    source.width,
                    source.height,
                    source.orientation,
                    source.frames
                ),
                "probe disagrees with process"
            );
        }
        Err(error) => panic!("process accepted what probe refuses: {error}"),
    }

    let display = &processed.display;
    let (dw, dh) = (display.width, display.height);
    assert!(dw >= 1 && dh >= 1);
    assert!(
        dw <= DISPLAY_MAX_SIDE && dh <= DISPLAY_MAX_SIDE,
        "display {dw}x{dh}"
    );
    assert!(dw <= ow && dh <= oh, "enlarged {ow}x{oh} to {dw}x{dh}");
    let (long, short, dlong, dshort) = if ow >= oh {
        (ow, oh, dw, dh)
    } else {
        (oh, ow, dh, dw)
    };
    if long <= DISPLAY_MAX_SIDE {
        assert_eq!((dw, dh), (ow, oh), "resized an image that fits");
    } else {
        assert_eq!(dlong, DISPLAY_MAX_SIDE, "{ow}x{oh} -> {dw}x{dh}");
        let exact = u64::from(short) * u64::from(DISPLAY_MAX_SIDE) / u64::from(long);
        assert!(
            u64::from(dshort).abs_diff(exact.max(1)) <= 1,
            "aspect ratio lost: {ow}x{oh} -> {dw}x{dh}"
        );
    }
    assert_webp(&display.data, dw, dh, "display");
    let thumbnail = &processed.thumbnail;
    assert_eq!(
        (thumbnail.width, thumbnail.height),
        (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    );
    assert_webp(&thumbnail.data, THUMBNAIL_SIDE, THUMBNAIL_SIDE, "thumbnail");

    assert!(!processed.thumbhash.is_empty() && processed.thumbhash.len() <= 32);
    match thumbhash::thumb_hash_to_rgba(&processed.thumbhash) {
        Ok((w, h, rgba)) => assert_eq!(rgba.len(), w * h * 4),
        Err(()) => panic!("the ThumbHash does not decode"),
    }
}

fn assert_webp(data: &[u8], width: u32, height: u32, what: &str) {
    assert!(
        data.len() > 12 && data.starts_with(b"RIFF") && &data[8..12] == b"WEBP",
        "{what} is not a WebP file"
    );
    match image::load_from_memory_with_format(data, image::ImageFormat::WebP) {
        Ok(decoded) => assert_eq!(
            (decoded.width(), decoded.height()),
            (width, height),
            "{what} decodes to another size"
        ),
        Err(error) => panic!("{what} does not decode: {error}"),
    }
}

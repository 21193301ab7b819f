//! Property tests: geometry invariants, and no input of any shape makes the core panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use image::{DynamicImage, ImageFormat};
use imgsvc_core::geometry::{cover_crop, fit_inside};
use imgsvc_core::{Policy, probe, process};
use proptest::prelude::*;

/// Limits tight enough that arbitrary inputs stay cheap, loose enough to decode fixtures.
fn tight() -> Policy {
    Policy {
        max_input_bytes: 1 << 20,
        max_side: 4096,
        max_pixels: 1 << 20,
        max_frames: 16,
        max_alloc_bytes: 64 << 20,
    }
}

proptest! {
    #[test]
    fn fit_inside_never_enlarges_and_keeps_the_aspect(w in 1u32..100_000, h in 1u32..100_000, max in 1u32..5000) {
        let (fw, fh) = fit_inside(w, h, max);
        prop_assert!(fw >= 1 && fh >= 1);
        prop_assert!(fw <= max && fh <= max);
        prop_assert!(fw <= w && fh <= h, "enlarged {w}x{h} to {fw}x{fh}");
        if w <= max && h <= max {
            prop_assert_eq!((fw, fh), (w, h));
        } else {
            // The long side lands exactly on `max`; the short side is the exact value
            // rounded (or 1 when it would vanish), so the aspect error is under 1 px.
            let (long_in, short_in, long_out, short_out) =
                if w >= h { (w, h, fw, fh) } else { (h, w, fh, fw) };
            prop_assert_eq!(long_out, max);
            let exact = f64::from(short_in) * f64::from(max) / f64::from(long_in);
            prop_assert!(short_out == 1 || (f64::from(short_out) - exact).abs() <= 0.5,
                "{w}x{h} -> {fw}x{fh}, exact short side {exact}");
        }
    }

    #[test]
    fn cover_crop_is_the_largest_centred_square(w in 1u32..100_000, h in 1u32..100_000) {
        let region = cover_crop(w, h);
        prop_assert_eq!(region.width, region.height);
        prop_assert_eq!(region.width, f64::from(w.min(h)));
        prop_assert!(region.left >= 0.0 && region.top >= 0.0);
        prop_assert!(region.left + region.width <= f64::from(w));
        prop_assert!(region.top + region.height <= f64::from(h));
        // Centred: equal margins on both sides.
        prop_assert!((2.0 * region.left + region.width - f64::from(w)).abs() < 1e-9);
        prop_assert!((2.0 * region.top + region.height - f64::from(h)).abs() < 1e-9);
    }

    #[test]
    fn arbitrary_bytes_give_ok_or_a_typed_error(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check_never_panics(&bytes);
    }

    #[test]
    fn arbitrary_bytes_behind_a_real_signature_give_ok_or_a_typed_error(
        signature in prop::sample::select(vec![
            b"\xFF\xD8\xFF\xE0".to_vec(),
            b"\x89PNG\r\n\x1A\n".to_vec(),
            b"GIF89a".to_vec(),
            b"RIFF\0\0\0\0WEBPVP8 ".to_vec(),
            b"RIFF\0\0\0\0WEBPVP8L".to_vec(),
            b"RIFF\0\0\0\0WEBPVP8X".to_vec(),
        ]),
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = signature;
        bytes.extend_from_slice(&tail);
        check_never_panics(&bytes);
    }

    #[test]
    fn mutated_real_images_give_ok_or_a_typed_error(
        which in 0usize..5,
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = fixtures()[which].clone();
        for (index, value) in mutations {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        check_never_panics(&bytes);
    }
}

/// Small valid images of every accepted format, for mutation.
fn fixtures() -> Vec<Vec<u8>> {
    let card = gradient(48, 32);
    let image = DynamicImage::ImageRgb8(card.clone());
    vec![
        jpeg_rgb(&card),
        jpeg(
            card.as_raw(),
            48,
            32,
            JpegOptions {
                progressive: true,
                exif_orientation: Some(6),
                ..JpegOptions::default()
            },
        ),
        encode(&image, ImageFormat::Png),
        animated_gif(3, 16, 16),
        encode(&image, ImageFormat::WebP),
    ]
}

/// `process` and `probe` return Ok with outputs that obey the policy, or a typed error.
fn check_never_panics(bytes: &[u8]) {
    let policy = tight();
    match process(bytes, &policy) {
        Ok(processed) => {
            let d = &processed.display;
            assert!(d.width <= 2048 && d.height <= 2048);
            assert_eq!(
                (processed.thumbnail.width, processed.thumbnail.height),
                (400, 400)
            );
            assert_eq!(decode_webp(&d.data).width(), d.width);
            assert!(
                u64::from(processed.source.width) * u64::from(processed.source.height)
                    <= policy.max_pixels
            );
        }
        Err(error) => assert!(!error.code().is_empty() && !error.to_string().is_empty()),
    }
    if let Err(error) = probe(bytes) {
        assert!(!error.code().is_empty());
    }
}

//! Every accepted variant of every format, orientation, colour and alpha behaviour, on
//! fixtures built in code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use image::{
    DynamicImage, GenericImageView, GrayImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba, RgbaImage,
};
use imgsvc_core::{Format, Policy, probe, process};

fn run(bytes: &[u8]) -> imgsvc_core::Processed {
    process(bytes, &Policy::default()).unwrap()
}

/// The colour at the centre of a quadrant of the decoded display image.
fn quadrant(image: &image::RgbImage, right: bool, bottom: bool) -> [u8; 3] {
    let (w, h) = image.dimensions();
    let x = if right { w - w / 8 - 1 } else { w / 8 };
    let y = if bottom { h - h / 8 - 1 } else { h / 8 };
    image.get_pixel(x, y).0
}

fn is_red(p: [u8; 3]) -> bool {
    p[0] > 180 && p[2] < 80
}

#[test]
fn all_eight_exif_orientations_put_the_top_left_marker_where_a_viewer_expects() {
    // (orientation, marker ends up right?, bottom?, axes swapped?)
    let expected = [
        (1, false, false, false),
        (2, true, false, false),
        (3, true, true, false),
        (4, false, true, false),
        (5, false, false, true),
        (6, true, false, true),
        (7, true, true, true),
        (8, false, true, true),
    ];
    let card = marker_image(160, 80);
    for (orientation, right, bottom, swapped) in expected {
        let bytes = jpeg(
            card.as_raw(),
            160,
            80,
            JpegOptions {
                exif_orientation: Some(orientation),
                ..JpegOptions::default()
            },
        );
        let processed = run(&bytes);
        assert_eq!(processed.source.orientation as u16, orientation);
        let dims = (processed.display.width, processed.display.height);
        assert_eq!(
            dims,
            if swapped { (80, 160) } else { (160, 80) },
            "{orientation}"
        );
        let display = decode_webp(&processed.display.data).into_rgb8();
        assert!(
            is_red(quadrant(&display, right, bottom)),
            "orientation {orientation}: marker not at right={right} bottom={bottom}"
        );
        for (r, b) in [(false, false), (true, false), (false, true), (true, true)] {
            if (r, b) != (right, bottom) {
                assert!(
                    !is_red(quadrant(&display, r, b)),
                    "orientation {orientation}"
                );
            }
        }
    }
}

#[test]
fn unknown_orientation_values_mean_upright() {
    for bogus in [0u16, 9, 255, 65535] {
        let bytes = jpeg(
            marker_image(160, 80).as_raw(),
            160,
            80,
            JpegOptions {
                exif_orientation: Some(bogus),
                ..JpegOptions::default()
            },
        );
        let processed = run(&bytes);
        assert_eq!(processed.source.orientation, 1, "{bogus}");
        let display = decode_webp(&processed.display.data).into_rgb8();
        assert_eq!(display.dimensions(), (160, 80));
        assert!(is_red(quadrant(&display, false, false)), "{bogus}");
    }
}

#[test]
fn no_source_metadata_reaches_the_outputs() {
    // An ICC profile and an EXIF block go in; both outputs are bare VP8 (+ALPH) streams.
    let card = gradient(300, 200);
    let bytes = jpeg(
        card.as_raw(),
        300,
        200,
        JpegOptions {
            exif_orientation: Some(1),
            icc: Some(b"not a real icc profile, ignored but must not leak".to_vec()),
            ..JpegOptions::default()
        },
    );
    let processed = run(&bytes);
    assert!(
        !processed.source.converted_to_srgb,
        "an unparseable profile is ignored"
    );
    for output in [&processed.display.data, &processed.thumbnail.data] {
        assert_clean_lossy_webp(output);
        assert!(!output.windows(4).any(|w| w == b"Exif" || w == b"ICCP"));
    }
}

#[test]
fn jpeg_variants_decode() {
    let card = gradient(240, 160);
    let rgb = card.as_raw().clone();
    let cmyk: Vec<u8> = card
        .pixels()
        .flat_map(|p| [255 - p.0[0], 255 - p.0[1], 255 - p.0[2], 0])
        .collect();
    let gray: Vec<u8> = card.pixels().map(|p| p.0[1]).collect();
    let cases = [
        ("baseline", rgb.clone(), jpeg_encoder::ColorType::Rgb, false),
        ("progressive", rgb, jpeg_encoder::ColorType::Rgb, true),
        ("cmyk", cmyk.clone(), jpeg_encoder::ColorType::Cmyk, false),
        ("ycck", cmyk, jpeg_encoder::ColorType::CmykAsYcck, false),
        ("gray", gray, jpeg_encoder::ColorType::Luma, false),
    ];
    for (label, samples, color, progressive) in cases {
        let bytes = jpeg(
            &samples,
            240,
            160,
            JpegOptions {
                color,
                progressive,
                ..JpegOptions::default()
            },
        );
        let processed =
            process(&bytes, &Policy::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(processed.source.format, Format::Jpeg);
        assert_eq!(
            (processed.display.width, processed.display.height),
            (240, 160)
        );
        let display = decode_webp(&processed.display.data);
        assert_eq!(display.dimensions(), (240, 160), "{label}");
    }
}

#[test]
fn png_variants_decode_and_sixteen_bit_becomes_eight() {
    let rgb = gradient(120, 90);
    let gray = GrayImage::from_fn(120, 90, |x, _| Luma([(x * 2) as u8]));
    let sixteen: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(120, 90, |x, y| {
        Rgb([(x * 500) as u16, (y * 700) as u16, 30_000])
    });
    let cases = [
        ("rgb8", DynamicImage::ImageRgb8(rgb.clone())),
        ("gray8", DynamicImage::ImageLuma8(gray)),
        ("rgb16", DynamicImage::ImageRgb16(sixteen)),
    ];
    for (label, image) in cases {
        let bytes = encode(&image, ImageFormat::Png);
        let processed = run(&bytes);
        assert_eq!(processed.source.format, Format::Png, "{label}");
        assert!(!processed.source.has_alpha, "{label}");
        let display = decode_webp(&processed.display.data);
        assert_eq!(display.dimensions(), (120, 90), "{label}");
    }
    // Palette (indexed) PNG, written with the png crate directly.
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, 64, 32);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_palette(vec![255, 0, 0, 0, 0, 255]);
        let mut writer = encoder.write_header().unwrap();
        let indices: Vec<u8> = (0..64 * 32).map(|i| u8::from(i % 64 >= 32)).collect();
        writer.write_image_data(&indices).unwrap();
    }
    let display = decode_webp(&run(&bytes).display.data).into_rgb8();
    assert!(is_red(display.get_pixel(4, 16).0));
    assert!(display.get_pixel(60, 16).0[2] > 180);
}

#[test]
fn webp_lossless_lossy_and_alpha_decode() {
    let rgba = RgbaImage::from_fn(200, 100, |x, _| {
        Rgba([200, 30, 30, if x < 100 { 0 } else { 255 }])
    });
    let lossless = encode(&DynamicImage::ImageRgba8(rgba.clone()), ImageFormat::WebP);
    let lossy_alpha = webp_lossy(&DynamicImage::ImageRgba8(rgba), 90.0);
    let lossy = webp_lossy(&DynamicImage::ImageRgb8(gradient(200, 100)), 90.0);
    for (label, bytes, alpha) in [
        ("lossless+alpha", lossless, true),
        ("lossy+alpha", lossy_alpha, true),
        ("lossy", lossy, false),
    ] {
        let processed = run(&bytes);
        assert_eq!(processed.source.format, Format::Webp, "{label}");
        assert_eq!(processed.source.has_alpha, alpha, "{label}");
        let display = decode_webp(&processed.display.data);
        assert_eq!(display.color().has_alpha(), alpha, "{label}");
    }
}

#[test]
fn gif_animation_gives_its_first_frame() {
    let bytes = animated_gif(5, 64, 48);
    let processed = run(&bytes);
    assert_eq!(processed.source.frames, 5);
    assert_eq!(probe(&bytes).unwrap().frames, 5);
    let display = decode_webp(&processed.display.data).into_rgb8();
    let centre = display.get_pixel(32, 24).0;
    assert!(
        centre[1] > 200 && centre[0] < 50,
        "first frame is green, got {centre:?}"
    );
}

#[test]
fn opaque_alpha_channel_is_dropped_and_real_alpha_kept() {
    let opaque = RgbaImage::from_pixel(50, 50, Rgba([10, 20, 30, 255]));
    let processed = run(&encode(&DynamicImage::ImageRgba8(opaque), ImageFormat::Png));
    assert!(!processed.source.has_alpha);
    assert!(!decode_webp(&processed.display.data).color().has_alpha());
}

#[test]
fn resizing_with_alpha_does_not_darken_edges() {
    // White opaque stripes on a fully transparent *black* background: a resize that does not
    // premultiply bleeds the invisible black into the visible edge pixels.
    let source = RgbaImage::from_fn(4000, 400, |x, _| {
        if (x / 40) % 2 == 0 {
            Rgba([255, 255, 255, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    });
    let bytes = encode(&DynamicImage::ImageRgba8(source), ImageFormat::Png);
    let processed = run(&bytes);
    assert_eq!(
        (processed.display.width, processed.display.height),
        (2048, 205)
    );
    let display = decode_webp(&processed.display.data).into_rgba8();
    let visible_edges: Vec<u8> = display
        .pixels()
        .filter(|p| (64..=192).contains(&p.0[3]))
        .map(|p| p.0[0])
        .collect();
    assert!(!visible_edges.is_empty());
    let darkest = *visible_edges.iter().min().unwrap();
    assert!(
        darkest > 200,
        "a half-transparent edge pixel darkened to {darkest}"
    );
}

#[test]
fn small_images_are_never_enlarged_but_their_thumbnail_is() {
    let processed = run(&jpeg_rgb(&gradient(120, 40)));
    assert_eq!(
        (processed.display.width, processed.display.height),
        (120, 40)
    );
    assert_eq!(
        (processed.thumbnail.width, processed.thumbnail.height),
        (400, 400)
    );
    assert_eq!(
        decode_webp(&processed.thumbnail.data).dimensions(),
        (400, 400)
    );
}

#[test]
fn extreme_panoramas_fit_and_their_thumbnail_comes_from_full_resolution() {
    // 8000×500: the display is 2048×128, too small for a 400 px thumbnail crop, so the
    // thumbnail is cut from the source: its centre must still show the fine stripes.
    let source = image::RgbImage::from_fn(8000, 500, |x, _| {
        if (x / 2) % 2 == 0 {
            Rgb([255, 255, 255])
        } else {
            Rgb([0, 0, 0])
        }
    });
    let processed = run(&encode(&DynamicImage::ImageRgb8(source), ImageFormat::Png));
    assert_eq!(
        (processed.display.width, processed.display.height),
        (2048, 128)
    );
    let thumbnail = decode_webp(&processed.thumbnail.data).into_rgb8();
    assert_eq!(thumbnail.dimensions(), (400, 400));
    // 500 source px → 400: stripes 2 px wide survive as visible contrast.
    let row: Vec<u8> = (0..400).map(|x| thumbnail.get_pixel(x, 200).0[0]).collect();
    let (lo, hi) = (row.iter().min().unwrap(), row.iter().max().unwrap());
    assert!(hi - lo > 100, "stripes lost: {lo}..{hi}");
}

#[test]
fn icc_profiles_are_converted_to_srgb() {
    // A Display P3 orange inside the sRGB gamut: converted, its red rises by about 15.
    let p3 = moxcms::ColorProfile::new_display_p3().encode().unwrap();
    let card = image::RgbImage::from_pixel(64, 64, Rgb([200, 100, 50]));
    let plain = run(&jpeg_rgb(&card));
    let tagged = run(&jpeg(
        card.as_raw(),
        64,
        64,
        JpegOptions {
            icc: Some(p3),
            ..JpegOptions::default()
        },
    ));
    assert!(tagged.source.converted_to_srgb);
    assert!(!plain.source.converted_to_srgb);
    let a = decode_webp(&plain.display.data)
        .into_rgb8()
        .get_pixel(32, 32)
        .0;
    let b = decode_webp(&tagged.display.data)
        .into_rgb8()
        .get_pixel(32, 32)
        .0;
    assert!(b[0] >= a[0] + 8, "red {a:?} -> {b:?}");
}

#[test]
fn png_cicp_display_p3_is_converted_and_overrides_icc() {
    let card = image::RgbImage::from_pixel(64, 64, Rgb([200, 100, 50]));
    let plain = encode(&DynamicImage::ImageRgb8(card), ImageFormat::Png);
    // Insert cICP (Display P3 primaries = 12, sRGB transfer = 13, identity matrix, full
    // range) right after IHDR, which ends at byte 33.
    let with_chunk = |data: &[u8]| {
        let mut body = b"cICP".to_vec();
        body.extend_from_slice(data);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&body);
        let mut out = plain[..33].to_vec();
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&hasher.finalize().to_be_bytes());
        out.extend_from_slice(&plain[33..]);
        out
    };
    let p3 = run(&with_chunk(&[12, 13, 0, 1]));
    let srgb = run(&with_chunk(&[1, 13, 0, 1]));
    let untagged = run(&plain);
    assert!(p3.source.converted_to_srgb);
    assert!(!srgb.source.converted_to_srgb, "sRGB needs no conversion");
    assert_eq!(srgb.display, untagged.display);
    let a = decode_webp(&untagged.display.data)
        .into_rgb8()
        .get_pixel(32, 32)
        .0;
    let b = decode_webp(&p3.display.data)
        .into_rgb8()
        .get_pixel(32, 32)
        .0;
    assert!(b[0] >= a[0] + 8, "red {a:?} -> {b:?}");
}

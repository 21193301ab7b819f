//! Golden facts over the real photos in ../shared/corpus (see its MANIFEST.tsv).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_clean_lossy_webp, corpus, decode_webp, read_corpus};
use imgsvc_core::{Format, Policy, ProcessError, probe, process};

/// Exact fit-inside-2048 size as real numbers, for the ±1 px comparison.
fn exact_fit(width: u32, height: u32) -> (f64, f64) {
    let scale = (2048.0 / f64::from(width.max(height))).min(1.0);
    (f64::from(width) * scale, f64::from(height) * scale)
}

fn format_of(name: &str) -> Format {
    match name {
        "jpeg" => Format::Jpeg,
        "png" => Format::Png,
        "webp" => Format::Webp,
        "gif" => Format::Gif,
        other => panic!("unexpected corpus format {other}"),
    }
}

#[test]
fn every_corpus_photo_within_the_limit_gives_the_golden_facts() {
    let policy = Policy::default();
    let entries: Vec<_> = corpus()
        .into_iter()
        .filter(|e| e.bytes <= policy.max_input_bytes)
        .collect();
    assert!(entries.len() >= 40, "corpus unexpectedly small");
    for entry in entries {
        let bytes = read_corpus(&entry.file);
        let name = &entry.file;
        let processed = process(&bytes, &policy).unwrap_or_else(|e| panic!("{name}: {e}"));
        let source = &processed.source;

        assert_eq!(source.format, format_of(&entry.format), "{name}");
        assert_eq!(
            (source.width, source.height),
            (entry.width, entry.height),
            "{name}"
        );
        assert_eq!(source.orientation, entry.orientation, "{name}");
        let swapped = entry.orientation >= 5;
        let oriented = if swapped {
            (entry.height, entry.width)
        } else {
            (entry.width, entry.height)
        };
        assert_eq!(
            (source.oriented_width, source.oriented_height),
            oriented,
            "{name}"
        );

        // Display: fits inside 2048, never enlarged, aspect kept to ±1 px of exact rounding.
        let display = &processed.display;
        let (ew, eh) = exact_fit(oriented.0, oriented.1);
        assert!(
            (f64::from(display.width) - ew).abs() <= 1.0
                && (f64::from(display.height) - eh).abs() <= 1.0,
            "{name}: display {}x{} vs exact {ew:.1}x{eh:.1}",
            display.width,
            display.height
        );
        assert!(display.width <= 2048 && display.height <= 2048, "{name}");
        assert!(
            display.width <= oriented.0 && display.height <= oriented.1,
            "{name}"
        );

        // Outputs are clean lossy WebPs that decode to the reported sizes.
        for (output, label) in [(display, "display"), (&processed.thumbnail, "thumbnail")] {
            assert_clean_lossy_webp(&output.data);
            let decoded = decode_webp(&output.data);
            assert_eq!(
                (decoded.width(), decoded.height()),
                (output.width, output.height),
                "{name} {label}"
            );
            assert_eq!(
                decoded.color().has_alpha(),
                entry.bands == 4,
                "{name} {label}: alpha kept exactly when the source has it"
            );
        }
        assert_eq!(
            (processed.thumbnail.width, processed.thumbnail.height),
            (400, 400),
            "{name}"
        );
        assert_eq!(source.has_alpha, entry.bands == 4, "{name}");
        assert!(
            (20..=30).contains(&processed.thumbhash.len()),
            "{name}: thumbhash {} bytes",
            processed.thumbhash.len()
        );

        // probe agrees with process on everything it reports.
        let probed = probe(&bytes).unwrap();
        assert_eq!(
            (
                probed.format,
                probed.width,
                probed.height,
                probed.orientation,
                probed.frames
            ),
            (
                source.format,
                source.width,
                source.height,
                source.orientation,
                source.frames
            ),
            "{name}"
        );
    }
}

#[test]
fn the_photo_over_ten_mebibytes_is_refused_as_too_large() {
    let entry = corpus()
        .into_iter()
        .find(|e| e.bytes > Policy::DEFAULT_MAX_INPUT_BYTES)
        .expect("the corpus has one photo over the upload limit");
    let bytes = read_corpus(&entry.file);
    let error = process(&bytes, &Policy::default()).unwrap_err();
    assert_eq!(error.code(), "too_large");
    assert_eq!(
        error,
        ProcessError::TooLarge {
            actual: entry.bytes,
            limit: 10 * 1024 * 1024
        }
    );
}

#[test]
fn the_animated_gif_keeps_its_first_frame_and_reports_its_frames() {
    let bytes = read_corpus("hugin_CA_fringes01_anim.gif");
    let processed = process(&bytes, &Policy::default()).unwrap();
    assert!(processed.source.frames > 1);
    assert_eq!(
        (processed.display.width, processed.display.height),
        (320, 320)
    );
}

#[test]
fn same_bytes_in_give_the_same_bytes_out() {
    for file in [
        "exif6_lomiri16_Dragonfly.jpg",
        "mate_Arc-Colors-Transparent_alpha.png",
        "gif_Aqua_1280.gif",
        "lomiri20_Painting-Colors.jpg",
    ] {
        let bytes = read_corpus(file);
        let first = process(&bytes, &Policy::default()).unwrap();
        let second = process(&bytes, &Policy::default()).unwrap();
        assert_eq!(first, second, "{file}");
    }
}

#[test]
fn transparent_corpus_image_keeps_its_transparency() {
    let bytes = read_corpus("mate_Arc-Colors-Transparent_alpha.png");
    let source = image::load_from_memory(&bytes).unwrap().into_rgba8();
    let processed = process(&bytes, &Policy::default()).unwrap();
    let display = decode_webp(&processed.display.data).into_rgba8();
    let mean_alpha = |image: &image::RgbaImage| {
        image.pixels().map(|p| f64::from(p.0[3])).sum::<f64>() / image.pixels().len() as f64
    };
    let (before, after) = (mean_alpha(&source), mean_alpha(&display));
    assert!(
        before < 250.0,
        "the fixture is meant to be transparent ({before})"
    );
    assert!(
        (before - after).abs() < 2.0,
        "mean alpha {before:.2} became {after:.2}"
    );
}

//! Each newly decoded format against another decoder's pixels. The fixtures and reference
//! decodes are made by `scripts/format-fixtures.py` (libavif for AVIF, libheif for HEIC, djxl for JPEG XL,
//! Pillow for TIFF) into the directory `IMGSVC_FORMAT_FIXTURES` names; `scripts/test` makes
//! them and sets it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use imgsvc_core::{Policy, stages};

/// PSNR the lossy formats must reach against the reference decoder (the bar).
const MIN_PSNR: f64 = 45.0;

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("IMGSVC_FORMAT_FIXTURES").expect(
        "IMGSVC_FORMAT_FIXTURES is not set: run scripts/format-fixtures.py DIR and set it to DIR \
         (scripts/test does both)",
    );
    PathBuf::from(dir)
}

#[derive(serde::Deserialize)]
struct Entry {
    input: String,
    reference: String,
    format: String,
    exact: bool,
    #[serde(default)]
    frames: Option<u32>,
    /// How the file is shown from the reference (which is as stored): `["crop", left, top,
    /// width, height]`, `["rotate", anti-clockwise quarter turns]`, `["mirror", axis]`.
    #[serde(default)]
    steps: Vec<Vec<serde_json::Value>>,
}

fn manifest() -> Vec<Entry> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn input_path(entry: &Entry) -> PathBuf {
    let path = Path::new(&entry.input);
    if path.is_absolute() {
        path.to_owned()
    } else {
        fixtures().join(path)
    }
}

/// What the core shows: decoded, cropped, oriented, in sRGB, at full size (every fixture
/// fits inside 2048), as RGBA.
fn shown(bytes: &[u8]) -> (image::RgbaImage, u32) {
    let decoded = stages::decode(bytes, &Policy::default()).unwrap();
    let frames = decoded.frames;
    let prepared = stages::display(decoded).unwrap();
    let (w, h) = (prepared.display.width(), prepared.display.height());
    let raw = prepared.display.as_bytes().to_vec();
    let rgba = if prepared.display.has_alpha() {
        image::RgbaImage::from_raw(w, h, raw).unwrap()
    } else {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, raw).unwrap()).to_rgba8()
    };
    (rgba, frames)
}

/// PSNR over the colour channels, and alpha where either image has any.
fn psnr(a: &image::RgbaImage, b: &image::RgbaImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "dimensions differ");
    let alpha = a.pixels().chain(b.pixels()).any(|p| p[3] != 255);
    let channels = if alpha { 4 } else { 3 };
    let (mut sum, mut n) = (0f64, 0f64);
    for (p, q) in a.pixels().zip(b.pixels()) {
        for c in 0..channels {
            let d = f64::from(p[c]) - f64::from(q[c]);
            sum += d * d;
            n += 1.0;
        }
    }
    if sum == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / (sum / n)).log10()
    }
}

/// A reference decode as 8-bit RGBA; 16-bit references are rounded (v × 255 / 65535).
fn reference(name: &str) -> image::RgbaImage {
    let decoded = image::open(fixtures().join(name)).unwrap();
    let wide = decoded.to_rgba16();
    let (w, h) = wide.dimensions();
    let narrow = wide
        .as_raw()
        .iter()
        .map(|&v| ((u32::from(v) * 255 + 32767) / 65535) as u8)
        .collect();
    image::RgbaImage::from_raw(w, h, narrow).unwrap()
}

/// The reference (as stored), with the manifest's steps applied: how the file is shown.
fn expected(entry: &Entry) -> image::RgbaImage {
    let mut image = reference(&entry.reference);
    for step in &entry.steps {
        let arg = |i: usize| step[i].as_u64().unwrap() as u32;
        image = match step[0].as_str().unwrap() {
            "crop" => image::imageops::crop_imm(&image, arg(1), arg(2), arg(3), arg(4)).to_image(),
            "rotate" => match arg(1) {
                1 => image::imageops::rotate270(&image),
                2 => image::imageops::rotate180(&image),
                3 => image::imageops::rotate90(&image),
                _ => image,
            },
            "mirror" if arg(1) == 0 => image::imageops::flip_horizontal(&image),
            "mirror" => image::imageops::flip_vertical(&image),
            other => panic!("unknown step {other}"),
        };
    }
    image
}

fn check_format(format: &str) {
    let entries: Vec<Entry> = manifest()
        .into_iter()
        .filter(|e| e.format == format)
        .collect();
    assert!(!entries.is_empty(), "no {format} fixtures in the manifest");
    let mut failures = Vec::new();
    for entry in &entries {
        let (got, frames) = shown(&std::fs::read(input_path(entry)).unwrap());
        let want = expected(entry);
        // To look at a failure: IMGSVC_DUMP_DECODED=DIR saves what the core showed.
        if let Some(dir) = std::env::var_os("IMGSVC_DUMP_DECODED") {
            let name = Path::new(&entry.input).file_name().unwrap();
            got.save(Path::new(&dir).join(name).with_extension("core.png"))
                .unwrap();
        }
        if got.dimensions() != want.dimensions() {
            failures.push(format!(
                "{}: {:?}, reference {:?}",
                entry.input,
                got.dimensions(),
                want.dimensions()
            ));
            continue;
        }
        let db = psnr(&got, &want);
        eprintln!("{:<60} {db:>7.2} dB", entry.input);
        let ok = if entry.exact {
            db.is_infinite()
        } else {
            db >= MIN_PSNR
        };
        if !ok {
            failures.push(format!("{}: {db:.2} dB", entry.input));
        }
        if let Some(expected_frames) = entry.frames {
            assert_eq!(frames, expected_frames, "{}", entry.input);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn avif_decodes_as_libavif_does_with_the_crop_applied() {
    check_format("avif");
}

#[test]
fn tiff_decodes_as_pillow_does() {
    check_format("tiff");
}

#[test]
fn heic_decodes_as_libheif_does_grids_rotation_and_display_p3_included() {
    check_format("heic");
}

#[test]
fn jpeg_xl_decodes_as_libjxl_does_lossless_exactly() {
    check_format("jxl");
}

/// Which colour description counts: the container's `nclx` when there is one (even when it
/// says sRGB and the AV1 stream says Display P3), the stream's only when the container has
/// none, as libavif and browsers read them.
#[test]
fn the_av1_streams_colour_counts_only_when_the_container_has_none() {
    let p3 = std::fs::read(fixtures().join("colour-p3.avif")).unwrap();
    let at = p3
        .windows(8)
        .position(|w| w == b"colrnclx")
        .expect("the fixture has an nclx box");
    let converted = |bytes: &[u8]| {
        imgsvc_core::process(bytes, &Policy::default())
            .unwrap()
            .source
            .converted_to_srgb
    };
    assert!(converted(&p3), "nclx and stream both Display P3");
    let mut container_says_srgb = p3.clone();
    // primaries (u16) right after "nclx": 12 → 1.
    container_says_srgb[at + 8..at + 10].copy_from_slice(&1u16.to_be_bytes());
    assert!(
        !converted(&container_says_srgb),
        "the container's sRGB wins"
    );
    let mut no_container_colour = p3.clone();
    no_container_colour[at..at + 4].copy_from_slice(b"free");
    assert!(
        converted(&no_container_colour),
        "the stream's Display P3 counts"
    );
}

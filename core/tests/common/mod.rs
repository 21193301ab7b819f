//! Fixtures built in code (no binary test files) and readers for checking outputs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::path::PathBuf;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

/// `../shared/corpus`, beside the project root.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

/// One row of the corpus MANIFEST.tsv.
#[derive(Debug, Clone)]
pub struct CorpusEntry {
    pub file: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    pub format: String,
    pub bands: u32,
    pub orientation: u8,
}

pub fn corpus() -> Vec<CorpusEntry> {
    let manifest = std::fs::read_to_string(corpus_dir().join("MANIFEST.tsv"))
        .expect("../shared/corpus/MANIFEST.tsv must exist beside the project");
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (file, bytes, width, height, format, bands, orientation) = (
        col("file"),
        col("bytes"),
        col("width"),
        col("height"),
        col("format"),
        col("bands"),
        col("exif_orientation"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            CorpusEntry {
                file: f[file].to_owned(),
                bytes: f[bytes].parse().unwrap(),
                width: f[width].parse().unwrap(),
                height: f[height].parse().unwrap(),
                format: f[format].to_owned(),
                bands: f[bands].parse().unwrap(),
                orientation: f[orientation].parse().unwrap_or(1),
            }
        })
        .collect()
}

pub fn read_corpus(file: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join(file)).unwrap()
}

/// A test card: a red square in the stored top-left corner on a blue field, so any flip or
/// rotation moves it somewhere recognisable.
pub fn marker_image(width: u32, height: u32) -> RgbImage {
    let marker = (width.min(height) / 2).max(1);
    RgbImage::from_fn(width, height, |x, y| {
        if x < marker && y < marker {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    })
}

/// A smooth gradient, the kind of content lossy codecs keep well.
pub fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            128,
        ])
    })
}

/// A minimal little-endian TIFF/EXIF block holding only an Orientation tag.
pub fn exif_with_orientation(value: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes()); // first IFD offset
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&value.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    tiff
}

pub struct JpegOptions {
    pub color: jpeg_encoder::ColorType,
    pub progressive: bool,
    pub exif_orientation: Option<u16>,
    pub icc: Option<Vec<u8>>,
}

impl Default for JpegOptions {
    fn default() -> Self {
        JpegOptions {
            color: jpeg_encoder::ColorType::Rgb,
            progressive: false,
            exif_orientation: None,
            icc: None,
        }
    }
}

/// Encode raw samples (layout given by `options.color`) as JPEG.
pub fn jpeg(samples: &[u8], width: u32, height: u32, options: JpegOptions) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 92);
    encoder.set_progressive(options.progressive);
    if let Some(value) = options.exif_orientation {
        encoder
            .add_exif_metadata(&exif_with_orientation(value))
            .unwrap();
    }
    if let Some(icc) = &options.icc {
        encoder.add_icc_profile(icc).unwrap();
    }
    encoder
        .encode(samples, width as u16, height as u16, options.color)
        .unwrap();
    out
}

pub fn jpeg_rgb(image: &RgbImage) -> Vec<u8> {
    jpeg(
        image.as_raw(),
        image.width(),
        image.height(),
        JpegOptions::default(),
    )
}

/// Encode with the `image` crate (PNG, GIF, lossless WebP).
pub fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// An animated GIF whose frame `i` is a solid colour `(i, 255 - i, 0)` (mod 256); frame 0
/// is pure green.
pub fn animated_gif(frames: u32, width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut out);
        let frames = (0..frames).map(|i| {
            let v = (i % 256) as u8;
            image::Frame::new(RgbaImage::from_pixel(
                width,
                height,
                Rgba([v, 255 - v, 0, 255]),
            ))
        });
        encoder.encode_frames(frames).unwrap();
    }
    out
}

/// Decode one of our outputs, insisting that it is a WebP.
pub fn decode_webp(bytes: &[u8]) -> DynamicImage {
    assert_eq!(image::guess_format(bytes).unwrap(), ImageFormat::WebP);
    image::load_from_memory_with_format(bytes, ImageFormat::WebP).unwrap()
}

/// The four-character chunk ids of a RIFF/WebP file, in order.
pub fn webp_chunks(bytes: &[u8]) -> Vec<String> {
    assert!(bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP");
    let mut chunks = Vec::new();
    let mut at = 12;
    while at + 8 <= bytes.len() {
        chunks.push(String::from_utf8_lossy(&bytes[at..at + 4]).into_owned());
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 8 + len + (len & 1);
    }
    chunks
}

/// A lossy WebP output is VP8 (optionally inside VP8X with ALPH) and nothing else: no EXIF,
/// XMP or ICC chunk can be present.
pub fn assert_clean_lossy_webp(bytes: &[u8]) {
    let chunks = webp_chunks(bytes);
    for chunk in &chunks {
        assert!(
            ["VP8 ", "VP8X", "ALPH"].contains(&chunk.as_str()),
            "unexpected chunk {chunk:?} in {chunks:?}"
        );
    }
    assert!(chunks.iter().any(|c| c == "VP8 "), "not lossy: {chunks:?}");
}

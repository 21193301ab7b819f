//! Images built in code, deterministically: no binary test files, and every fixture says
//! how it was made.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

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
    /// 1–100; 92 unless a fixture needs another.
    pub quality: u8,
    pub color: jpeg_encoder::ColorType,
    pub progressive: bool,
    pub exif_orientation: Option<u16>,
    pub icc: Option<Vec<u8>>,
}

impl Default for JpegOptions {
    fn default() -> Self {
        JpegOptions {
            quality: 92,
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
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, options.quality);
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

/// A baseline JPEG whose SOF0 header is rewritten to claim `width × height`.
pub fn jpeg_claiming_sides(mut jpeg: Vec<u8>, width: u16, height: u16) -> Vec<u8> {
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0");
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
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

/// One real 1×1 frame, then `empty_frames` frames of 14 bytes each (descriptor, LZW code
/// size, one sub-block holding just the clear and end codes, terminator): the most frames
/// per byte a GIF can hold.
pub fn gif_of_empty_frames(empty_frames: usize) -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    // Screen 1×1, a global table of two colours (black, white).
    gif.extend_from_slice(&[1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF]);
    let descriptor = [0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0];
    gif.extend_from_slice(&descriptor);
    // Clear, index 0, end: the one pixel, LZW-coded.
    gif.extend_from_slice(&[0x02, 0x02, 0x44, 0x01, 0x00]);
    for _ in 0..empty_frames {
        gif.extend_from_slice(&descriptor);
        gif.extend_from_slice(&[0x02, 0x01, 0x2C, 0x00]);
    }
    gif.push(0x3B);
    gif
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(data);
    hasher.finalize()
}

/// Appends one PNG chunk (length, type, data, CRC).
pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A PNG with this IHDR (8-bit, colour type `color`), then `before_idat` chunks, one IDAT
/// holding `idat`, IEND.
pub fn png_with(
    width: u32,
    height: u32,
    color: u8,
    before_idat: &[(&[u8; 4], Vec<u8>)],
    idat: &[u8],
) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1A\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, color, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    for (kind, data) in before_idat {
        png_chunk(&mut out, kind, data);
    }
    png_chunk(&mut out, b"IDAT", idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

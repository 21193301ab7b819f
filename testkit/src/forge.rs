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

/// Lossy WebP (VP8, with an ALPH chunk for RGBA) through libwebp's simple API, which the
/// `image` crate cannot write. Not the core's encoder: fixtures stay independent of it.
#[allow(unsafe_code)] // libwebp is C; the one call and its free are checked below.
pub fn webp_lossy(image: &DynamicImage, quality: f32) -> Vec<u8> {
    type Encode = unsafe extern "C" fn(*const u8, i32, i32, i32, f32, *mut *mut u8) -> usize;
    let (encode, pixels, channels): (Encode, &[u8], i32) = match image {
        DynamicImage::ImageRgb8(rgb) => (libwebp_sys::WebPEncodeRGB, rgb.as_raw(), 3),
        DynamicImage::ImageRgba8(rgba) => (libwebp_sys::WebPEncodeRGBA, rgba.as_raw(), 4),
        other => panic!("webp_lossy takes RGB8 or RGBA8, not {:?}", other.color()),
    };
    let (width, height) = (image.width() as i32, image.height() as i32);
    let mut output: *mut u8 = std::ptr::null_mut();
    // SAFETY: the pixel buffer is `height` packed rows of `width` × channels bytes (the
    // stride given), alive for the call; libwebp writes a pointer to memory it allocates.
    let size = unsafe {
        encode(
            pixels.as_ptr(),
            width,
            height,
            width * channels,
            quality,
            &mut output,
        )
    };
    assert!(size > 0 && !output.is_null(), "libwebp failed to encode");
    // SAFETY: on success libwebp's output holds `size` initialised bytes, copied here and
    // then freed with libwebp's own free, once.
    let bytes = unsafe { std::slice::from_raw_parts(output, size) }.to_vec();
    unsafe { libwebp_sys::WebPFree(output.cast()) };
    bytes
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

// --- HEIF (AVIF) and TIFF containers, to lie about one field at a time ----------------

pub fn bmff(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

pub fn full_box(kind: &[u8; 4], version: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![version, 0, 0, 0];
    b.extend_from_slice(body);
    bmff(kind, &b)
}

/// A HEIF file's (AVIF, or HEIC after `.hevc()`) parts, to be lied about one at a time.
pub struct Heif {
    /// Item 1 is the primary. (id, type)
    pub items: Vec<(u16, [u8; 4])>,
    /// (item, extents as (offset from the start of `mdat`'s data, length)); offsets past
    /// `u32::MAX - mdat start` are written as is (for "past the end" lies).
    pub locations: Vec<(u16, Vec<(u64, u32)>)>,
    /// (item, ispe)
    pub sizes: Vec<(u16, (u32, u32))>,
    /// (type, from, to…)
    pub references: Vec<([u8; 4], u16, Vec<u16>)>,
    pub mdat: Vec<u8>,
    /// HEVC items (`hvc1`, `hvcC`, brand `heic`) instead of AV1 ones.
    pub hevc: bool,
}

impl Heif {
    /// One AV1 item of `width`×`height` whose data is `mdat`.
    pub fn single(width: u32, height: u32, mdat: Vec<u8>) -> Heif {
        let len = mdat.len() as u32;
        Heif {
            items: vec![(1, *b"av01")],
            locations: vec![(1, vec![(0, len)])],
            sizes: vec![(1, (width, height))],
            references: Vec::new(),
            mdat,
            hevc: false,
        }
    }

    /// The same file as a HEIC: its AV1 items become HEVC ones (an `hvcC` with no parameter
    /// sets, 4-byte NAL lengths).
    pub fn hevc(mut self) -> Heif {
        self.hevc = true;
        for (_, kind) in &mut self.items {
            if kind == b"av01" {
                *kind = *b"hvc1";
            }
        }
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let build = |mdat_start: u64| {
            let ftyp = if self.hevc {
                bmff(b"ftyp", b"heic\0\0\0\0mif1heicmiaf")
            } else {
                bmff(b"ftyp", b"avif\0\0\0\0avifmif1miaf")
            };
            let mut meta = full_box(b"hdlr", 0, b"\0\0\0\0pict\0\0\0\0\0\0\0\0\0\0\0\0\0");
            meta.extend(full_box(b"pitm", 0, &1u16.to_be_bytes()));
            let mut iinf = (self.items.len() as u16).to_be_bytes().to_vec();
            for (id, kind) in &self.items {
                let mut infe = id.to_be_bytes().to_vec();
                infe.extend_from_slice(&[0, 0]);
                infe.extend_from_slice(kind);
                infe.push(0);
                iinf.extend(full_box(b"infe", 2, &infe));
            }
            meta.extend(full_box(b"iinf", 0, &iinf));
            // iloc v0: offset and length 4 bytes, no base offset.
            let mut iloc = vec![0x44, 0x00];
            iloc.extend_from_slice(&(self.locations.len() as u16).to_be_bytes());
            for (id, extents) in &self.locations {
                iloc.extend_from_slice(&id.to_be_bytes());
                iloc.extend_from_slice(&[0, 0]);
                iloc.extend_from_slice(&(extents.len() as u16).to_be_bytes());
                for (offset, length) in extents {
                    let absolute = (mdat_start + offset).min(u64::from(u32::MAX)) as u32;
                    iloc.extend_from_slice(&absolute.to_be_bytes());
                    iloc.extend_from_slice(&length.to_be_bytes());
                }
            }
            meta.extend(full_box(b"iloc", 0, &iloc));
            // Properties: av1C or hvcC (index 1), then one ispe per sized item.
            let mut ipco = if self.hevc {
                let mut hvcc = vec![1];
                hvcc.resize(21, 0);
                hvcc.extend_from_slice(&[0xFF, 0]);
                bmff(b"hvcC", &hvcc)
            } else {
                bmff(b"av1C", &[0x81, 0x00, 0x0c, 0x00])
            };
            let mut ipma = (self.items.len() as u32).to_be_bytes().to_vec();
            for (i, (id, (w, h))) in self.sizes.iter().enumerate() {
                let mut ispe = w.to_be_bytes().to_vec();
                ispe.extend_from_slice(&h.to_be_bytes());
                ipco.extend(full_box(b"ispe", 0, &ispe));
                // Two associations, 16-bit indices (flags 1), essential: av1C, its ispe.
                ipma.extend_from_slice(&id.to_be_bytes());
                ipma.push(2);
                ipma.extend_from_slice(&0x8001u16.to_be_bytes());
                ipma.extend_from_slice(&(0x8000 | (i as u16 + 2)).to_be_bytes());
            }
            let mut iprp = bmff(b"ipco", &ipco);
            let mut ipma_box = vec![0, 0, 0, 1];
            ipma_box.extend(ipma);
            iprp.extend(bmff(b"ipma", &ipma_box));
            meta.extend(bmff(b"iprp", &iprp));
            if !self.references.is_empty() {
                let mut iref = Vec::new();
                for (kind, from, to) in &self.references {
                    let mut r = from.to_be_bytes().to_vec();
                    r.extend_from_slice(&(to.len() as u16).to_be_bytes());
                    for t in to {
                        r.extend_from_slice(&t.to_be_bytes());
                    }
                    iref.extend(bmff(kind, &r));
                }
                meta.extend(full_box(b"iref", 0, &iref));
            }
            let mut file = ftyp;
            file.extend(full_box(b"meta", 0, &meta));
            let start = file.len() as u64 + 8;
            file.extend(bmff(b"mdat", &self.mdat));
            (file, start)
        };
        let (_, start) = build(0);
        build(start).0
    }
}

/// A grid item (id 1) of `rows`×`columns` tiles (ids 2…) each `tile`, its output `output`.
pub fn avif_grid(rows: u8, columns: u8, output: (u32, u32), tile: (u32, u32), tiles: u16) -> Heif {
    let mut grid = vec![0, 1, rows - 1, columns - 1];
    grid.extend_from_slice(&output.0.to_be_bytes());
    grid.extend_from_slice(&output.1.to_be_bytes());
    let mut heif = Heif {
        items: vec![(1, *b"grid")],
        locations: vec![(1, vec![(0, grid.len() as u32)])],
        sizes: vec![(1, output)],
        references: vec![(*b"dimg", 1, (2..2 + tiles).collect())],
        mdat: grid,
        hevc: false,
    };
    // Every tile an item, up to what a test needs (the 65,025-tile lie has only its refs).
    for id in 2..2 + if tiles <= 1024 { tiles } else { 0 } {
        heif.items.push((id, *b"av01"));
        heif.locations.push((id, vec![(0, 4)]));
        heif.sizes.push((id, tile));
    }
    heif
}

// --- JPEG XL headers -------------------------------------------------------------------

/// Bits written least significant first, as JPEG XL's codestream reads them.
#[derive(Default)]
pub struct JxlBits {
    bytes: Vec<u8>,
    len: usize,
}

impl JxlBits {
    pub fn put(mut self, value: u64, count: u32) -> JxlBits {
        for i in 0..count {
            if self.len.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (value >> i) & 1 == 1 {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 1 << (self.len % 8);
            }
            self.len += 1;
        }
        self
    }

    /// The codestream: signature, the bits, then `padding` zero bytes.
    pub fn codestream(self, padding: usize) -> Vec<u8> {
        let mut out = vec![0xFF, 0x0A];
        out.extend(self.bytes);
        out.resize(out.len() + padding, 0);
        out
    }
}

/// A bare JPEG XL codestream whose header claims `width`×`height` (large `SizeHeader` form,
/// 30-bit sides) and, with `icc_bytes`, an embedded ICC profile of that encoded length; no
/// pixels follow.
pub fn jxl_claiming(width: u32, height: u32, icc_bytes: Option<u64>) -> Vec<u8> {
    let side = |bits: JxlBits, v: u32| bits.put(3, 2).put(u64::from(v) - 1, 30);
    let bits = side(JxlBits::default().put(0, 1), height).put(0, 3);
    let bits = side(bits, width);
    let bits = match icc_bytes {
        // ImageMetadata.all_default, then default_m.
        None => bits.put(1, 1).put(1, 1),
        Some(icc) => {
            // all_default 0, extra_fields 0, integer 8-bit samples, 16-bit buffers, no extra
            // channels, not XYB; ColourEncoding: not default, want_icc, RGB; no extensions;
            // default_m.
            let bits = bits
                .put(0, 1)
                .put(0, 1)
                .put(0, 1)
                .put(0, 2)
                .put(1, 1)
                .put(0, 2);
            let bits = bits
                .put(0, 1)
                .put(0, 1)
                .put(1, 1)
                .put(0, 2)
                .put(0, 2)
                .put(1, 1);
            // The ICC's encoded size, U64: selector 3, 12 bits, then 8-bit groups.
            let mut bits = bits.put(3, 2).put(icc & 0xFFF, 12);
            let mut rest = icc >> 12;
            while rest > 0 {
                bits = bits.put(1, 1).put(rest & 0xFF, 8);
                rest >>= 8;
            }
            bits.put(0, 1)
        }
    };
    bits.codestream(64)
}

/// A little-endian TIFF: one 8-bit RGB strip image with `width`×`height`, its strip at
/// `strip_offset` (`None`: right after the header) and its IFD's next-IFD pointer `next`.
pub fn tiff_claiming(width: u32, height: u32, strip_offset: Option<u32>, next: u32) -> Vec<u8> {
    let entries: [(u16, u16, u32, u32); 8] = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, strip_offset.unwrap_or(8 + 2 + 9 * 12 + 4)),
        (277, 3, 1, 3),
        (279, 4, 1, width.saturating_mul(height).saturating_mul(3)),
    ];
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&9u16.to_le_bytes());
    for (tag, kind, count, value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    // RowsPerStrip = height.
    out.extend_from_slice(&278u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&next.to_le_bytes());
    let pixels = (width as usize * height as usize * 3).min(1 << 20);
    out.extend(std::iter::repeat_n(0x80, pixels));
    out
}

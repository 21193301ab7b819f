//! Hostile inputs built by hand: each gets its typed error, and the bombs are refused without
//! allocating what they claim (measured with a counting allocator on the test's thread).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The counting allocator below is the one place tests need `unsafe`.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use image::{DynamicImage, ImageFormat};
use imgsvc_core::{Format, Policy, ProcessError, probe, process};

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

/// Counts the bytes live on the current thread (the core is single-threaded, so that is
/// every byte a `process` call holds) and the peak since the last reset.
struct CountingAllocator;

fn account(grow: usize, shrink: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(grow).saturating_sub(shrink);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: defers every operation to the system allocator; only counts sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            account(layout.size(), 0);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        account(0, layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            account(new_size, layout.size());
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Run `f` and return its result with the peak number of bytes it had allocated at once.
fn peak_bytes<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let result = f();
    (result, PEAK.with(Cell::get).saturating_sub(start))
}

const MIB: usize = 1024 * 1024;

/// Refused with `code`, having allocated at most `max_mib` MiB along the way.
fn assert_refused(label: &str, bytes: &[u8], code: &str, max_mib: usize) -> ProcessError {
    let (result, peak) = peak_bytes(|| process(bytes, &Policy::default()));
    let error = match result {
        Ok(p) => panic!("{label}: accepted, {:?}", p.source),
        Err(e) => e,
    };
    assert_eq!(error.code(), code, "{label}: {error}");
    assert!(peak <= max_mib * MIB, "{label}: peak {} MiB", peak / MIB);
    error
}

fn crc32(data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(data);
    hasher.finalize()
}

/// A PNG whose IHDR claims `width × height` followed by a tiny IDAT.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1A\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

/// A real small JPEG whose SOF header is rewritten to claim `width × height`.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = jpeg_rgb(&gradient(64, 64));
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0");
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

#[test]
fn empty_input_is_refused() {
    assert_eq!(
        process(&[], &Policy::default()),
        Err(ProcessError::EmptyInput)
    );
    assert_eq!(probe(&[]), Err(ProcessError::EmptyInput));
}

#[test]
fn input_over_the_byte_limit_is_refused_before_looking_at_it() {
    let policy = Policy {
        max_input_bytes: 1000,
        ..Policy::default()
    };
    let bytes = jpeg_rgb(&gradient(200, 200));
    assert!(bytes.len() > 1000);
    let error = process(&bytes, &policy).unwrap_err();
    assert_eq!(error.code(), "too_large");
}

#[test]
fn gigapixel_claims_are_refused_without_allocating_them() {
    assert_refused(
        "png 100k×100k",
        &png_claiming(100_000, 100_000),
        "dimensions_too_large",
        4,
    );
    assert_refused(
        "png 30k×30k",
        &png_claiming(30_000, 30_000),
        "too_many_pixels",
        4,
    );
    // The largest sides PNG allows: the png crate used to refuse them itself (memory_limit)
    // before the core's check, as it does on wasm32 for any side whose buffers overflow a
    // 32-bit usize.
    assert_refused(
        "png (2^31-1)²",
        &png_claiming(i32::MAX as u32, i32::MAX as u32),
        "dimensions_too_large",
        4,
    );
    assert_refused(
        "jpeg 65535²",
        &jpeg_claiming(65_535, 65_535),
        "dimensions_too_large",
        4,
    );
    assert_refused(
        "jpeg 20k×20k",
        &jpeg_claiming(20_000, 20_000),
        "too_many_pixels",
        4,
    );
    // The probe reads the same claim and allocates nothing for it either.
    let (probed, peak) = peak_bytes(|| probe(&png_claiming(100_000, 100_000)));
    assert_eq!(probed.unwrap().width, 100_000);
    assert!(peak < 4 * MIB);
}

/// Issue 17 item 15: a 400-frame GIF was refused (`too_many_frames`, limit 256) where sharp
/// and imgproxy take its first frame. Frames are counted without LZW decoding, so the count
/// costs one pass over bytes the byte limit already bounds: no count limit by default.
#[test]
fn a_four_hundred_frame_gif_gives_its_first_frame() {
    let bytes = animated_gif(400, 8, 8);
    let processed = process(&bytes, &Policy::default()).unwrap();
    assert_eq!(processed.source.frames, 400);
    assert_eq!(probe(&bytes).unwrap().frames, 400);
    // A host may still narrow the count (the browser package's `maxFrames`).
    let narrowed = Policy::default().tightened_by(Policy {
        max_frames: 16,
        ..Policy::default()
    });
    assert_eq!(
        process(&bytes, &narrowed).unwrap_err(),
        ProcessError::TooManyFrames { limit: 16 }
    );
}

/// One real 1×1 frame, then `empty_frames` frames of 14 bytes each (descriptor, LZW code
/// size, one sub-block holding just the clear and end codes, terminator): the most frames
/// per byte a GIF can hold.
fn gif_of_empty_frames(empty_frames: usize) -> Vec<u8> {
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

/// What the count limit was there for: a frame bomb is still one cheap scan, now bounded by
/// the byte limit (10 MiB of 14-byte frames: 748,981 frames).
#[test]
fn a_frame_bomb_costs_one_scan_of_its_bytes() {
    let limit = usize::try_from(Policy::DEFAULT_MAX_INPUT_BYTES).unwrap();
    let empty_frames = (limit - 35) / 14;
    let bytes = gif_of_empty_frames(empty_frames);
    assert!(bytes.len() <= limit);
    let started = std::time::Instant::now();
    let (result, peak) = peak_bytes(|| process(&bytes, &Policy::default()));
    let elapsed = started.elapsed();
    println!(
        "{} frames in {} bytes: {elapsed:?}",
        empty_frames + 1,
        bytes.len()
    );
    let processed = result.unwrap();
    assert_eq!(processed.source.frames as usize, empty_frames + 1);
    assert!(peak < 4 * MIB, "peak {} KiB", peak / 1024);
    // The bound: "a frame bomb must still cost milliseconds".
    assert!(
        elapsed < std::time::Duration::from_millis(500),
        "{elapsed:?}"
    );
}

#[test]
fn markup_disguised_as_images_is_named_in_the_refusal() {
    let cases: &[(&[u8], Format)] = &[
        (
            b"<!DOCTYPE html><html><script>alert(1)</script></html>",
            Format::Html,
        ),
        (
            b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>",
            Format::Svg,
        ),
        (b"%PDF-1.4\n1 0 obj\n", Format::Pdf),
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", Format::Heic),
        (b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0", Format::Bmp),
        (b"just some text", Format::Unknown),
    ];
    for (bytes, detected) in cases {
        let error = assert_refused(detected.name(), bytes, "unsupported_format", 1);
        assert_eq!(
            error,
            ProcessError::UnsupportedFormat {
                detected: *detected
            }
        );
        let named = match detected {
            Format::Unknown => "not an image format we recognise",
            known => known.name(),
        };
        assert!(error.to_string().contains(named), "{error}");
    }
}

#[test]
fn truncated_files_are_refused_as_corrupt() {
    let card = gradient(160, 120);
    let progressive = jpeg(
        card.as_raw(),
        160,
        120,
        JpegOptions {
            progressive: true,
            ..JpegOptions::default()
        },
    );
    let files = [
        ("jpeg", jpeg_rgb(&card)),
        ("progressive jpeg", progressive),
        (
            "png",
            encode(&DynamicImage::ImageRgb8(card.clone()), ImageFormat::Png),
        ),
        (
            "gif",
            encode(&DynamicImage::ImageRgb8(card.clone()), ImageFormat::Gif),
        ),
        (
            "webp",
            encode(&DynamicImage::ImageRgb8(card), ImageFormat::WebP),
        ),
    ];
    for (label, bytes) in files {
        let step = (bytes.len() / 50).max(1);
        for cut in (1..bytes.len() - 2).step_by(step) {
            let truncated = &bytes[..cut];
            match process(truncated, &Policy::default()) {
                Ok(_) => panic!("{label} cut at {cut}/{} was accepted", bytes.len()),
                Err(e) => assert!(
                    ["corrupt_image", "unsupported_format"].contains(&e.code()),
                    "{label} cut at {cut}: {e}"
                ),
            }
        }
    }
}

#[test]
fn probe_allocates_no_pixel_buffer() {
    for file in [
        "lomiri20_Kleiber.jpg",
        "exif6_lomiri16_Dragonfly.jpg",
        "lxqt_flowers.png",
        "gnome_pixels-l.webp",
        "gif_Aqua_1280.gif",
        "hugin_CA_fringes01_anim.gif",
    ] {
        let bytes = read_corpus(file);
        let (probed, peak) = peak_bytes(|| probe(&bytes));
        let probed = probed.unwrap();
        let pixels = probed.width as usize * probed.height as usize;
        // A pixel buffer would be at least one byte per pixel (≥ 100 KB for these files).
        assert!(
            peak < pixels / 4,
            "{file}: probe peaked at {peak} bytes for {pixels} px"
        );
    }
}

/// A 1×1 RGB PNG whose iCCP chunk inflates to `profile_len` bytes of zeros.
fn png_with_inflating_profile(profile_len: usize) -> Vec<u8> {
    let mut info = png::Info::with_size(1, 1);
    info.color_type = png::ColorType::Rgb;
    info.bit_depth = png::BitDepth::Eight;
    info.icc_profile = Some(std::borrow::Cow::Owned(vec![0; profile_len]));
    let mut out = Vec::new();
    let mut writer = png::Encoder::with_info(&mut out, info)
        .unwrap()
        .write_header()
        .unwrap();
    writer.write_image_data(&[200, 100, 50]).unwrap();
    writer.finish().unwrap();
    out
}

#[test]
fn a_colour_profile_bomb_is_not_inflated() {
    // Found by the hostile corpus: the png crate inflates iCCP while reading headers, and a
    // 1 MB upload peaked at 2.1 GB. Now its buffers are capped from the first byte: the
    // profile is dropped (as any unusable one is) and the pixel still decodes.
    let bomb = png_with_inflating_profile(256 * MIB);
    assert!(bomb.len() < MIB, "{} bytes", bomb.len());
    let (result, peak) = peak_bytes(|| process(&bomb, &Policy::default()));
    let processed = result.unwrap();
    assert!(!processed.source.converted_to_srgb);
    assert_eq!((processed.source.width, processed.source.height), (1, 1));
    assert!(peak < 100 * MIB, "peak {} MiB", peak / MIB);
    let (probed, peak) = peak_bytes(|| probe(&bomb));
    assert_eq!(probed.unwrap().format, Format::Png);
    assert!(peak < 100 * MIB, "probe peak {} MiB", peak / MIB);
}

// --- AVIF (HEIF container) and TIFF -----------------------------------------------------

fn bmff(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

fn full_box(kind: &[u8; 4], version: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![version, 0, 0, 0];
    b.extend_from_slice(body);
    bmff(kind, &b)
}

/// An AVIF's parts, to be lied about one at a time.
struct Heif {
    /// Item 1 is the primary. (id, type)
    items: Vec<(u16, [u8; 4])>,
    /// (item, extents as (offset from the start of `mdat`'s data, length)); offsets past
    /// `u32::MAX - mdat start` are written as is (for "past the end" lies).
    locations: Vec<(u16, Vec<(u64, u32)>)>,
    /// (item, ispe)
    sizes: Vec<(u16, (u32, u32))>,
    /// (type, from, to…)
    references: Vec<([u8; 4], u16, Vec<u16>)>,
    mdat: Vec<u8>,
}

impl Heif {
    /// One AV1 item of `width`×`height` whose data is `mdat`.
    fn single(width: u32, height: u32, mdat: Vec<u8>) -> Heif {
        let len = mdat.len() as u32;
        Heif {
            items: vec![(1, *b"av01")],
            locations: vec![(1, vec![(0, len)])],
            sizes: vec![(1, (width, height))],
            references: Vec::new(),
            mdat,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let build = |mdat_start: u64| {
            let ftyp = bmff(b"ftyp", b"avif\0\0\0\0avifmif1miaf");
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
            // Properties: av1C (index 1), then one ispe per sized item.
            let mut ipco = bmff(b"av1C", &[0x81, 0x00, 0x0c, 0x00]);
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
fn avif_grid(rows: u8, columns: u8, output: (u32, u32), tile: (u32, u32), tiles: u16) -> Heif {
    let mut grid = vec![0, 1, rows - 1, columns - 1];
    grid.extend_from_slice(&output.0.to_be_bytes());
    grid.extend_from_slice(&output.1.to_be_bytes());
    let mut heif = Heif {
        items: vec![(1, *b"grid")],
        locations: vec![(1, vec![(0, grid.len() as u32)])],
        sizes: vec![(1, output)],
        references: vec![(*b"dimg", 1, (2..2 + tiles).collect())],
        mdat: grid,
    };
    // Every tile an item, up to what a test needs (the 65,025-tile lie has only its refs).
    for id in 2..2 + if tiles <= 1024 { tiles } else { 0 } {
        heif.items.push((id, *b"av01"));
        heif.locations.push((id, vec![(0, 4)]));
        heif.sizes.push((id, tile));
    }
    heif
}

#[test]
fn avif_size_claims_are_refused_before_anything_is_allocated() {
    let cases = [
        (
            "ispe 65535²",
            Heif::single(65_535, 65_535, vec![0; 64]),
            "dimensions_too_large",
        ),
        (
            "ispe 30000²",
            Heif::single(30_000, 30_000, vec![0; 64]),
            "too_many_pixels",
        ),
        (
            "grid output 60000x100",
            avif_grid(1, 2, (60_000, 100), (30_000, 100), 2),
            "dimensions_too_large",
        ),
        (
            "grid of 256x256 tiles of 512² (131 Gpx)",
            avif_grid(255, 255, (8_000, 8_000), (512, 512), 65_025),
            // More references than the parser reads (4,096): refused before any tile.
            "unsupported_feature",
        ),
        (
            "grid of 16x16 tiles of 4096² behind a small output",
            avif_grid(16, 16, (100, 100), (4096, 4096), 256),
            "corrupt_image",
        ),
        (
            "grid of 16x16 tiles of 2048² (1 Gpx)",
            avif_grid(16, 16, (32_768, 32_768), (2048, 2048), 256),
            "too_many_pixels",
        ),
    ];
    for (label, heif, code) in cases {
        assert_refused(label, &heif.bytes(), code, 2);
    }
}

#[test]
fn avif_structural_lies_are_corrupt_and_cost_no_more_than_the_file() {
    let mut self_grid = avif_grid(1, 1, (64, 64), (64, 64), 1);
    self_grid.references = vec![(*b"dimg", 1, vec![1])];
    let mut grid_of_grids = avif_grid(1, 1, (64, 64), (64, 64), 1);
    grid_of_grids.items[1].1 = *b"grid";
    let mut past_end = Heif::single(64, 64, vec![0; 64]);
    past_end.locations[0].1 = vec![(1 << 31, 64)];
    // 60,000 extents that each name the whole payload: 60,000 × 64 KiB = 3.7 GiB if joined.
    let mut overlapping = Heif::single(64, 64, vec![0; 64 * 1024]);
    overlapping.locations[0].1 = vec![(0, 64 * 1024); 60_000];
    let mut no_location = Heif::single(64, 64, vec![0; 64]);
    no_location.locations.clear();
    let cases = [
        ("a grid that contains itself", self_grid),
        ("a grid of grids", grid_of_grids),
        ("item data past the end", past_end),
        ("overlapping extents", overlapping),
        ("an item with no location", no_location),
        ("an AV1 item of zeros", Heif::single(64, 64, vec![0; 64])),
    ];
    for (label, heif) in cases {
        let bytes = heif.bytes();
        assert_refused(label, &bytes, "corrupt_image", 2 + bytes.len() / MIB);
    }
}

/// A real AVIF (a conformance file) cut anywhere is refused as corrupt: the container's
/// lengths, then the AV1 stream's.
#[test]
fn truncated_avif_is_corrupt() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/formats/linku_fox.profile0.8bpc.yuv420.avif");
    let bytes = std::fs::read(path).unwrap();
    let step = (bytes.len() / 60).max(1);
    for cut in (12..bytes.len() - 1).step_by(step) {
        match process(&bytes[..cut], &Policy::default()) {
            Ok(_) => panic!("cut at {cut}/{} was accepted", bytes.len()),
            Err(e) => assert_eq!(e.code(), "corrupt_image", "cut at {cut}: {e}"),
        }
    }
}

/// A little-endian TIFF: one 8-bit RGB strip image with `width`×`height`, its strip at
/// `strip_offset` (`None`: right after the header) and its IFD's next-IFD pointer `next`.
fn tiff_claiming(width: u32, height: u32, strip_offset: Option<u32>, next: u32) -> Vec<u8> {
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

#[test]
fn tiff_lies_are_refused_without_allocating_what_they_claim() {
    assert!(process(&tiff_claiming(64, 48, None, 0), &Policy::default()).is_ok());
    assert_refused(
        "100000 px wide",
        &tiff_claiming(100_000, 10, None, 0),
        "dimensions_too_large",
        2,
    );
    assert_refused(
        "30000²",
        &tiff_claiming(30_000, 30_000, None, 0),
        "too_many_pixels",
        2,
    );
    assert_refused(
        "strip past the end",
        &tiff_claiming(64, 48, Some(1 << 30), 0),
        "corrupt_image",
        2,
    );
}

/// An IFD chain that loops back on itself is refused as corrupt, not followed forever.
#[test]
fn a_tiff_ifd_loop_is_not_followed_forever() {
    let looped = tiff_claiming(64, 48, None, 8);
    let error = assert_refused("IFD loop", &looped, "corrupt_image", 2);
    assert!(error.to_string().contains("cycle"), "{error}");
}

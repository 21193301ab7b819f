//! The hostile corpus: the classic ways image services are knocked over, built in code
//! (deterministic, small: the largest case is 10 MiB + 1 byte of zeros, most are a few KB),
//! each with the outcome the service must give.
//!
//! Used by `host-lambda/tests/hostile_corpus.rs` (through the real `imgsvc process` and
//! `POST /images`), `host-lambda/tests/sandbox_serve.rs` (the same bombs in the wasm sandbox)
//! and `host-lambda/examples/hostile_corpus.rs` (writes the files and `EXPECTED.tsv` to a
//! directory).

use image::{DynamicImage, ImageFormat, Rgb, Rgba};

use crate::forge::{
    JpegOptions, crc32, encode, gradient, jpeg, jpeg_claiming_sides, png_chunk, png_with,
    webp_lossy,
};
pub use crate::forge::{animated_gif, gif_of_empty_frames};

/// What the service must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// `ok` or the core's error code (`imgsvc process`'s `error.code`).
    pub code: &'static str,
    /// `POST /images`: the HTTP status and the problem's `code` (`ok` for 201).
    pub status: u16,
    pub http_code: &'static str,
}

/// Processed: 201.
pub const OK: Expect = Expect {
    code: "ok",
    status: 201,
    http_code: "ok",
};

/// Refused with `code`, at the status `api/error.rs` gives it.
pub const fn refused(code: &'static str) -> Expect {
    let status = match code.as_bytes() {
        b"empty_input" | b"corrupt_image" => 400,
        b"too_large" => 413,
        b"unsupported_format" | b"unsupported_feature" => 415,
        _ => 422,
    };
    Expect {
        code,
        status,
        http_code: code,
    }
}

/// Not an image at all (HTML, text, …): `unsupported_format`, and 400 `not_an_image` over HTTP.
pub const NOT_AN_IMAGE: Expect = Expect {
    code: "unsupported_format",
    status: 400,
    http_code: "not_an_image",
};

pub struct Case {
    /// Unique, file-name safe.
    pub name: String,
    /// Cases of one kind (the table can fold them into one row).
    pub group: &'static str,
    pub bytes: Vec<u8>,
    pub expect: Expect,
    /// Generous bounds: the wall time of one `imgsvc process` run and its peak RSS.
    pub max_ms: u64,
    pub max_rss_mib: u64,
    /// Why this is the right answer, for the table.
    pub note: &'static str,
    /// A known defect this case still shows (outcome or bound): the test requires the
    /// problem to be there, so a fix can't go unnoticed (then drop this).
    pub known_bug: Option<&'static str>,
    /// The same, only in the wasm sandbox (`IMGSVC_SANDBOX=wasm`).
    pub known_in_wasm: Option<&'static str>,
}

/// Refusals from headers never decode a pixel: the process stays near its baseline.
const SMALL_RSS: u64 = 64;
const SMALL_MS: u64 = 10_000;

fn case(
    name: impl Into<String>,
    group: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
    note: &'static str,
) -> Case {
    Case {
        name: name.into(),
        group,
        bytes,
        expect,
        max_ms: SMALL_MS,
        max_rss_mib: SMALL_RSS,
        note,
        known_bug: None,
        known_in_wasm: None,
    }
}

impl Case {
    fn bounds(mut self, max_ms: u64, max_rss_mib: u64) -> Case {
        self.max_ms = max_ms;
        self.max_rss_mib = max_rss_mib;
        self
    }

    pub fn known_bug(mut self, what: &'static str) -> Case {
        self.known_bug = Some(what);
        self
    }

    pub fn known_in_wasm(mut self, what: &'static str) -> Case {
        self.known_in_wasm = Some(what);
        self
    }
}

pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.push(case(
        "empty",
        "empty",
        Vec::new(),
        refused("empty_input"),
        "",
    ));
    cases.extend(truncations());
    cases.extend(gigapixel_claims());
    cases.extend(bombs());
    cases.extend(frames());
    cases.extend(metadata());
    cases.extend(variants());
    cases.extend(polyglots());
    cases.extend(disguises());
    cases.extend(containers());
    cases.push(
        case(
            "over_10_mib",
            "too large",
            vec![0; 10 * 1024 * 1024 + 1],
            refused("too_large"),
            "10 MiB + 1: refused before reading it whole",
        )
        .bounds(SMALL_MS, 64),
    );
    cases
}

// --- base images ------------------------------------------------------------------------

fn card_jpeg(progressive: bool) -> Vec<u8> {
    let card = gradient(96, 64);
    jpeg(
        card.as_raw(),
        96,
        64,
        JpegOptions {
            quality: 90,
            progressive,
            ..JpegOptions::default()
        },
    )
}

fn card_png() -> Vec<u8> {
    encode(&DynamicImage::ImageRgb8(gradient(96, 64)), ImageFormat::Png)
}

fn card_gif() -> Vec<u8> {
    encode(&DynamicImage::ImageRgb8(gradient(96, 64)), ImageFormat::Gif)
}

/// Lossless (VP8L): what the `image` crate writes.
fn card_webp_lossless() -> Vec<u8> {
    encode(
        &DynamicImage::ImageRgb8(gradient(96, 64)),
        ImageFormat::WebP,
    )
}

/// Lossy (VP8) through libwebp.
fn card_webp_lossy() -> Vec<u8> {
    webp_lossy(&DynamicImage::ImageRgb8(gradient(96, 64)), 80.0)
}

// --- truncation at every segment boundary ------------------------------------------------

/// Offsets where a JPEG's marker segments start (SOI, APPn, DQT, SOF, DHT, SOS, EOI), the
/// entropy-coded data after each SOS running to the next marker.
pub fn jpeg_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut out = vec![0];
    let mut at = 2;
    while at + 4 <= bytes.len() && bytes[at] == 0xFF {
        out.push(at);
        let marker = bytes[at + 1];
        if marker == 0xD9 {
            break;
        }
        let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
        at += 2 + len;
        if marker == 0xDA {
            // Entropy-coded data: to the next marker that is not a stuffed 0xFF00 or RSTn.
            while at + 1 < bytes.len()
                && !(bytes[at] == 0xFF
                    && bytes[at + 1] != 0
                    && !(0xD0..=0xD7).contains(&bytes[at + 1]))
            {
                at += 1;
            }
        }
    }
    out
}

/// Offsets where a PNG's chunks start (after the signature).
pub fn png_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut out = vec![0, 8];
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 12 + len;
        if at < bytes.len() {
            out.push(at);
        }
    }
    out
}

/// Offsets where a RIFF/WebP file's chunks start (after the 12-byte header).
pub fn webp_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut out = vec![0, 12];
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 8 + len + (len & 1);
        if at < bytes.len() {
            out.push(at);
        }
    }
    out
}

/// Offsets where a GIF's blocks start: header, logical screen, global colour table,
/// extensions, image descriptors, the image data, the trailer.
pub fn gif_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut out = vec![0, 6];
    let mut at = 13;
    if bytes[10] & 0x80 != 0 {
        out.push(at);
        at += 3 << ((bytes[10] & 7) + 1);
    }
    let sub_blocks = |mut at: usize| {
        while at < bytes.len() && bytes[at] != 0 {
            at += 1 + bytes[at] as usize;
        }
        at + 1
    };
    while at < bytes.len() {
        out.push(at);
        match bytes[at] {
            0x21 => at = sub_blocks(at + 2),
            0x2C => {
                let flags = bytes[at + 9];
                at += 10;
                if flags & 0x80 != 0 {
                    out.push(at);
                    at += 3 << ((flags & 7) + 1);
                }
                out.push(at); // LZW minimum code size, then the data sub-blocks
                at = sub_blocks(at + 1);
            }
            _ => break, // 0x3B, the trailer
        }
    }
    out
}

fn truncations() -> Vec<Case> {
    type Boundaries = fn(&[u8]) -> Vec<usize>;
    // (label, file, where its segments start, its signature's length)
    let files: [(&str, Vec<u8>, Boundaries, usize); 6] = [
        ("jpeg", card_jpeg(false), jpeg_boundaries, 3),
        ("jpeg_progressive", card_jpeg(true), jpeg_boundaries, 3),
        ("png", card_png(), png_boundaries, 8),
        ("gif", card_gif(), gif_boundaries, 6),
        ("webp_lossy", card_webp_lossy(), webp_boundaries, 12),
        ("webp_lossless", card_webp_lossless(), webp_boundaries, 12),
    ];
    let mut cases = Vec::new();
    for (label, bytes, boundaries, signature) in files {
        let mut cuts = boundaries(&bytes);
        cuts.retain(|&c| c > 0 && c < bytes.len());
        // And one cut in the middle of the largest segment (the pixel data).
        let mut edges = cuts.clone();
        edges.push(bytes.len());
        let (start, end) = std::iter::once(0)
            .chain(edges.iter().copied())
            .zip(edges.iter().copied())
            .max_by_key(|(a, b)| b - a)
            .unwrap();
        cuts.push((start + end) / 2);
        cuts.sort_unstable();
        cuts.dedup();
        for cut in cuts {
            // Shorter than the signature: nothing says it is an image at all.
            let expect = if cut < signature {
                NOT_AN_IMAGE
            } else if label == "gif" && cut == bytes.len() - 1 {
                // Only the trailer (0x3B) missing: every frame is complete.
                OK
            } else {
                refused("corrupt_image")
            };
            cases.push(case(
                format!("truncated_{label}_at_{cut}_of_{}", bytes.len()),
                truncation_group(label),
                bytes[..cut].to_vec(),
                expect,
                "",
            ));
        }
    }
    cases
}

fn truncation_group(label: &str) -> &'static str {
    match label {
        "jpeg" => "truncated JPEG (every marker segment, mid-scan)",
        "jpeg_progressive" => "truncated progressive JPEG (every segment, mid-scan)",
        "png" => "truncated PNG (every chunk, mid-IDAT)",
        "gif" => "truncated GIF (every block, mid-LZW)",
        "webp_lossy" => "truncated WebP VP8 (every RIFF chunk, mid-VP8)",
        _ => "truncated WebP VP8L (every RIFF chunk, mid-VP8L)",
    }
}

// --- headers claiming gigapixels --------------------------------------------------------

fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    jpeg_claiming_sides(card_jpeg(false), width, height)
}

fn gif_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = card_gif();
    bytes[6..8].copy_from_slice(&width.to_le_bytes());
    bytes[8..10].copy_from_slice(&height.to_le_bytes());
    let gct = if bytes[10] & 0x80 != 0 {
        3 << ((bytes[10] & 7) + 1)
    } else {
        0
    };
    let mut at = 13 + gct;
    while bytes[at] == 0x21 {
        at += 2;
        while bytes[at] != 0 {
            at += 1 + bytes[at] as usize;
        }
        at += 1;
    }
    assert_eq!(bytes[at], 0x2C);
    bytes[at + 5..at + 7].copy_from_slice(&width.to_le_bytes());
    bytes[at + 7..at + 9].copy_from_slice(&height.to_le_bytes());
    bytes
}

/// The lossless card with its VP8L header rewritten to claim `width × height` (≤ 16384).
fn webp_vp8l_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = card_webp_lossless();
    let at = bytes.windows(4).position(|w| w == b"VP8L").unwrap() + 8;
    assert_eq!(bytes[at], 0x2F);
    let old = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap());
    let new = (old & 0xF000_0000) | (width - 1) | ((height - 1) << 14);
    bytes[at + 1..at + 5].copy_from_slice(&new.to_le_bytes());
    bytes
}

/// The lossy card with its VP8 frame header rewritten to claim `width × height` (≤ 16383).
fn webp_vp8_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = card_webp_lossy();
    let at = bytes.windows(4).position(|w| w == b"VP8 ").unwrap() + 8;
    assert_eq!(&bytes[at + 3..at + 6], &[0x9D, 0x01, 0x2A]);
    bytes[at + 6..at + 8].copy_from_slice(&width.to_le_bytes());
    bytes[at + 8..at + 10].copy_from_slice(&height.to_le_bytes());
    bytes
}

fn riff(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut body = b"WEBP".to_vec();
    for (kind, data) in chunks {
        body.extend_from_slice(*kind);
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn u24(v: u32) -> [u8; 3] {
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// The VP8L payload of the lossless card.
fn card_vp8l_payload() -> Vec<u8> {
    let bytes = card_webp_lossless();
    let at = bytes.windows(4).position(|w| w == b"VP8L").unwrap();
    let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    bytes[at + 8..at + 8 + len].to_vec()
}

fn webp_vp8x_canvas(width: u32, height: u32) -> Vec<u8> {
    let mut vp8x = vec![0u8; 4];
    vp8x.extend_from_slice(&u24(width - 1));
    vp8x.extend_from_slice(&u24(height - 1));
    riff(&[(b"VP8X", &vp8x), (b"VP8L", &card_vp8l_payload())])
}

fn gigapixel_claims() -> Vec<Case> {
    let g = "header claiming gigapixels";
    vec![
        case(
            "png_claims_100000x100000",
            g,
            png_with(100_000, 100_000, 2, &[], &zlib_zeros(4)),
            refused("dimensions_too_large"),
            "10 Gpx; a 4-byte IDAT",
        ),
        case(
            "png_claims_30000x30000",
            g,
            png_with(30_000, 30_000, 2, &[], &zlib_zeros(4)),
            refused("too_many_pixels"),
            "900 Mpx",
        ),
        case(
            "png_claims_2147483647_square",
            g,
            png_with(i32::MAX as u32, i32::MAX as u32, 6, &[], &zlib_zeros(4)),
            refused("dimensions_too_large"),
            "the largest sides PNG allows; the IHDR's sides are checked before the png crate \
             sizes any buffer",
        ),
        case(
            "jpeg_claims_65535x65535",
            g,
            jpeg_claiming(65_535, 65_535),
            refused("dimensions_too_large"),
            "the largest sides JPEG allows",
        ),
        case(
            "jpeg_claims_20000x20000",
            g,
            jpeg_claiming(20_000, 20_000),
            refused("too_many_pixels"),
            "400 Mpx",
        ),
        case(
            "gif_claims_65535x65535",
            g,
            gif_claiming(65_535, 65_535),
            refused("dimensions_too_large"),
            "screen and frame",
        ),
        case(
            "webp_vp8l_claims_16384x16384",
            g,
            webp_vp8l_claiming(16_384, 16_384),
            refused("corrupt_image"),
            "268 Mpx claimed, so the bitstream no longer matches: corrupt, before any buffer",
        ),
        case(
            "webp_vp8_claims_16383x16383",
            g,
            webp_vp8_claiming(16_383, 16_383),
            refused("too_many_pixels"),
            "268 Mpx, the largest VP8 frame header",
        ),
        case(
            "webp_vp8x_canvas_16777216_square",
            g,
            webp_vp8x_canvas(1 << 24, 1 << 24),
            refused("corrupt_image"),
            "the largest VP8X canvas, around a 96x64 frame: inconsistent, so corrupt",
        ),
    ]
}

// --- decompression bombs ----------------------------------------------------------------

/// Writes bits least-significant first, as DEFLATE does.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u64, count: u32) {
        self.acc |= value << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    /// A Huffman code: most significant bit first.
    fn code(&mut self, code: u64, len: u32) {
        for i in (0..len).rev() {
            self.put((code >> i) & 1, 1);
        }
    }
}

/// A zlib stream inflating to `n` zero bytes in ~n/1032 bytes: one dynamic-Huffman block
/// whose lit/len code gives `<258, 1>` (symbol 285) one bit and whose distance code gives
/// distance 1 one bit, so every 258 zeros after the first cost two zero bits. Written by
/// hand because no encoder gets there quickly (1 GiB would take seconds to compress).
pub fn zlib_zeros(n: u64) -> Vec<u8> {
    assert!(n >= 1);
    let mut bits = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        n: 0,
    };
    bits.put(1, 1); // BFINAL
    bits.put(2, 2); // dynamic Huffman
    bits.put(29, 5); // HLIT: 286 lit/len codes
    bits.put(1, 5); // HDIST: 2 distance codes
    bits.put(14, 4); // HCLEN: 18 code-length codes
    // Code-length code lengths in the RFC 1951 order 16,17,18,0,8,7,9,6,10,5,11,4,12,3,13,2,14,1:
    // 18 → 1 bit, 2 → 2 bits, 1 → 2 bits.
    for len in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
        bits.put(len, 3);
    }
    // Canonical code-length codes: 18 = 0, 1 = 10, 2 = 11.
    let cl_one = |bits: &mut Bits| bits.code(0b10, 2);
    let cl_two = |bits: &mut Bits| bits.code(0b11, 2);
    let zeros = |bits: &mut Bits, run: u64| {
        bits.code(0, 1);
        bits.put(run - 11, 7);
    };
    cl_two(&mut bits); // literal 0: 2 bits
    zeros(&mut bits, 138); // literals 1..=138
    zeros(&mut bits, 117); // literals 139..=255
    cl_two(&mut bits); // 256 (end of block): 2 bits
    zeros(&mut bits, 28); // 257..=284
    cl_one(&mut bits); // 285 (length 258): 1 bit
    cl_one(&mut bits); // distance 0 (1): 1 bit
    cl_one(&mut bits); // distance 1 (2): 1 bit, unused, so the code is complete
    // Lit/len codes: 285 = 0, literal 0 = 10, end = 11. Distance 1 = 0.
    bits.code(0b10, 2);
    let runs = (n - 1) / 258;
    let rest = (n - 1) % 258;
    // Two zero bits per run: whole zero bytes once aligned.
    let mut left = runs;
    while left > 0 && bits.n != 0 {
        bits.put(0, 2);
        left -= 1;
    }
    bits.out
        .extend(std::iter::repeat_n(0u8, (left / 4) as usize));
    for _ in 0..left % 4 {
        bits.put(0, 2);
    }
    for _ in 0..rest {
        bits.code(0b10, 2);
    }
    bits.code(0b11, 2);
    if bits.n > 0 {
        bits.put(0, 8 - bits.n);
    }
    // Adler-32 of n zeros: a = 1, b = n.
    let adler = (((n % 65_521) as u32) << 16) | 1;
    bits.out.extend_from_slice(&adler.to_be_bytes());
    bits.out
}

/// zlib over real data (stored blocks: the bombs' other chunks need no compression).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

pub const GIB: u64 = 1 << 30;

fn bombs() -> Vec<Case> {
    let g = "PNG zlib bomb";
    // 8000 × 8000 RGBA: exactly 64 Mpx, the most the policy allows; all-zero scanlines.
    let full = (1 + 8_000 * 4) * 8_000;
    // A 1×1 RGB image: 4 bytes of scanline.
    let tiny_idat = zlib_stored(&[0, 10, 20, 30]);
    vec![
        case(
            "png_1x1_idat_inflating_to_1_gib",
            g,
            png_with(1, 1, 2, &[], &zlib_zeros(GIB)),
            OK,
            "1 MB; the decoder stops inflating at the image's 4 bytes",
        ),
        case(
            "png_64mpx_rgba_idat_inflating_to_256_mb",
            g,
            png_with(8_000, 8_000, 6, &[], &zlib_zeros(full)),
            OK,
            "within every limit: decoded (256 MB of pixels) and resized",
        )
        .bounds(60_000, 1_024),
        case(
            "png_64mpx_rgba_idat_inflating_to_4_gib",
            g,
            png_with(8_000, 8_000, 6, &[], &zlib_zeros(4 * GIB - 1)),
            OK,
            "4 MB; 256 MB of pixels, the other 3.75 GiB never inflated",
        )
        .bounds(60_000, 1_024),
        case(
            "png_ztxt_inflating_to_1_gib",
            g,
            png_with(
                1,
                1,
                2,
                &[(
                    b"zTXt",
                    [b"Comment\0\0".as_slice(), &zlib_zeros(GIB)].concat(),
                )],
                &tiny_idat,
            ),
            OK,
            "text chunks are never inflated",
        ),
        case(
            "png_iccp_inflating_to_1_gib",
            g,
            png_with(
                1,
                1,
                2,
                &[(b"iCCP", [b"icc\0\0".as_slice(), &zlib_zeros(GIB)].concat())],
                &tiny_idat,
            ),
            OK,
            "an unusable profile is ignored; the png crate's buffers are capped at 64 MiB \
             from the first byte (core/src/decode.rs `open`): was 2.1 GB peak",
        )
        // The cap itself plus the process: ~80 MiB natively; through the wasm sandbox the
        // server grows ~134 MiB (the guest's linear memory, freed with the instance).
        .bounds(SMALL_MS, 160),
    ]
}

// --- frames -----------------------------------------------------------------------------

fn animated_webp(frames: u32) -> Vec<u8> {
    let frame = card_vp8l_payload();
    let mut vp8x = vec![0x02, 0, 0, 0]; // animation
    vp8x.extend_from_slice(&u24(96 - 1));
    vp8x.extend_from_slice(&u24(64 - 1));
    let anim = [0u8, 0, 0, 0, 0, 0];
    let mut anmf = Vec::new();
    anmf.extend_from_slice(&u24(0));
    anmf.extend_from_slice(&u24(0));
    anmf.extend_from_slice(&u24(96 - 1));
    anmf.extend_from_slice(&u24(64 - 1));
    anmf.extend_from_slice(&u24(40));
    anmf.push(0);
    anmf.extend_from_slice(b"VP8L");
    anmf.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    anmf.extend_from_slice(&frame);
    if frame.len() % 2 == 1 {
        anmf.push(0);
    }
    let mut chunks: Vec<(&[u8; 4], &[u8])> = vec![(b"VP8X", &vp8x), (b"ANIM", &anim)];
    for _ in 0..frames {
        chunks.push((b"ANMF", &anmf));
    }
    riff(&chunks)
}

fn apng_claiming(frames: u32) -> Vec<u8> {
    let mut actl = frames.to_be_bytes().to_vec();
    actl.extend_from_slice(&0u32.to_be_bytes());
    png_with(1, 1, 2, &[(b"acTL", actl)], &zlib_stored(&[0, 1, 2, 3]))
}

/// Frames are counted without decoding them (GIF: no LZW; WebP: chunk headers; APNG: the
/// `acTL` claim) and only the first is decoded, so their number is no reason to refuse an
/// animation (sharp and imgproxy take the first frame too): the byte limit bounds the scan.
fn frames() -> Vec<Case> {
    let g = "frame bomb";
    vec![
        case(
            "gif_1000_frames",
            g,
            animated_gif(1_000, 16, 16),
            OK,
            "counted without LZW decoding; the first frame is used",
        ),
        case(
            "gif_400_frames",
            g,
            animated_gif(400, 16, 16),
            OK,
            "an ordinary animation (was refused at 256 frames)",
        ),
        case(
            "gif_748981_frames_10_mib",
            g,
            gif_of_empty_frames((10 * 1024 * 1024 - 35) / 14),
            OK,
            "the most frames 10 MiB can hold: one scan, no per-frame allocation",
        )
        .bounds(SMALL_MS, 96),
        case(
            "webp_1000_anmf_frames",
            g,
            animated_webp(1_000),
            OK,
            "chunk headers only; the first frame is used",
        ),
        case(
            "apng_actl_claims_4294967295_frames",
            g,
            apng_claiming(u32::MAX),
            OK,
            "only the default image is decoded",
        ),
    ]
}

// --- metadata -----------------------------------------------------------------------------

/// A little-endian TIFF/EXIF block: IFD0 with an Orientation, then whatever `tail` adds.
fn exif(orientation: u16, next_ifd: u32) -> Vec<u8> {
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&next_ifd.to_le_bytes());
    tiff
}

/// The card JPEG with extra segments inserted right after SOI.
fn jpeg_with_segments(segments: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let base = card_jpeg(false);
    let mut out = base[..2].to_vec();
    for (marker, payload) in segments {
        out.extend_from_slice(&[0xFF, *marker]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(payload);
    }
    out.extend_from_slice(&base[2..]);
    out
}

fn app1_exif(tiff: &[u8]) -> (u8, Vec<u8>) {
    (0xE1, [b"Exif\0\0".as_slice(), tiff].concat())
}

fn app2_icc(seq: u8, count: u8, data: &[u8]) -> (u8, Vec<u8>) {
    (
        0xE2,
        [b"ICC_PROFILE\0".as_slice(), &[seq, count], data].concat(),
    )
}

fn metadata() -> Vec<Case> {
    let mut cases = Vec::new();
    let max_segment = 65_533;
    // ~9.6 MB of EXIF: 150 full APP1 segments, the first a real IFD whose next-IFD offset
    // points back at itself.
    let mut huge_exif = vec![app1_exif(&exif(6, 8))];
    let filler = exif(3, 0);
    let mut padded = filler.clone();
    padded.resize(max_segment - 6, 0xAB);
    huge_exif.extend(std::iter::repeat_n(app1_exif(&padded), 149));
    cases.push(
        case(
            "jpeg_150_app1_exif_segments_9_6_mb_ifd_loop",
            "huge EXIF",
            jpeg_with_segments(&huge_exif),
            OK,
            "EXIF is read once, loops end, and nothing of it reaches the output",
        )
        .bounds(SMALL_MS, 128),
    );
    // An IFD claiming 65535 entries in a 64 KB segment.
    let mut lying = b"II*\0".to_vec();
    lying.extend_from_slice(&8u32.to_le_bytes());
    lying.extend_from_slice(&u16::MAX.to_le_bytes());
    lying.resize(max_segment - 6, 0x12);
    cases.push(case(
        "jpeg_exif_ifd_claims_65535_entries",
        "huge EXIF",
        jpeg_with_segments(&[app1_exif(&lying)]),
        OK,
        "",
    ));
    // ICC: 150 chunks of ~64 KB (9.6 MB) of garbage, and a profile header claiming 4 GiB.
    let chunk = vec![0x5A; max_segment - 14];
    let icc: Vec<_> = (1..=150).map(|seq| app2_icc(seq, 150, &chunk)).collect();
    cases.push(
        case(
            "jpeg_icc_150_chunks_9_6_mb_garbage",
            "huge ICC",
            jpeg_with_segments(&icc),
            OK,
            "an unparseable profile is ignored (pixels taken as sRGB)",
        )
        .bounds(SMALL_MS, 128),
    );
    let mut claims = u32::MAX.to_be_bytes().to_vec();
    claims.extend_from_slice(b"lcms\x04\x30\0\0mntrRGB XYZ ");
    claims.resize(132, 0);
    cases.push(case(
        "jpeg_icc_header_claims_4_gib",
        "huge ICC",
        jpeg_with_segments(&[app2_icc(1, 1, &claims)]),
        OK,
        "",
    ));
    cases.push(case(
        "jpeg_icc_chunk_3_of_2",
        "huge ICC",
        jpeg_with_segments(&[app2_icc(3, 2, &claims), app2_icc(0, 0, &claims)]),
        OK,
        "bogus sequence numbers",
    ));
    let mut iccp = b"icc\0\0".to_vec();
    iccp.extend_from_slice(&zlib_stored(&vec![0x5A; 9 << 20]));
    cases.push(
        case(
            "png_iccp_9_mb_garbage",
            "huge ICC",
            png_with(1, 1, 2, &[(b"iCCP", iccp)], &zlib_stored(&[0, 1, 2, 3])),
            OK,
            "",
        )
        .bounds(SMALL_MS, 128),
    );
    for orientation in [0u16, 9, 255, 65_535] {
        cases.push(case(
            format!("jpeg_exif_orientation_{orientation}"),
            "bogus orientation",
            jpeg_with_segments(&[app1_exif(&exif(orientation, 0))]),
            OK,
            "treated as 1 (as stored)",
        ));
    }
    cases
}

// --- colour variants ----------------------------------------------------------------------

fn variants() -> Vec<Case> {
    let card = gradient(96, 64);
    let cmyk: Vec<u8> = card
        .pixels()
        .flat_map(|p| {
            let [r, g, b] = p.0;
            let k = 255 - r.max(g).max(b);
            // max(r, g, b) ≥ each channel, so none of these can underflow.
            [255 - r - k, 255 - g - k, 255 - b - k, k]
        })
        .collect();
    let cmyk_jpeg = |color| {
        jpeg(
            &cmyk,
            96,
            64,
            JpegOptions {
                quality: 90,
                color,
                ..JpegOptions::default()
            },
        )
    };
    let rgb16 = image::ImageBuffer::<Rgb<u16>, Vec<u16>>::from_fn(96, 64, |x, y| {
        Rgb([(x * 680) as u16, (y * 1020) as u16, 40_000])
    });
    let rgba16 = image::ImageBuffer::<Rgba<u16>, Vec<u16>>::from_fn(96, 64, |x, y| {
        Rgba([(x * 680) as u16, (y * 1020) as u16, 40_000, 30_000])
    });
    let gray16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(96, 64, |x, _| {
        image::Luma([(x * 680) as u16])
    });
    let g = "CMYK and 16-bit";
    vec![
        case(
            "jpeg_cmyk_adobe",
            g,
            cmyk_jpeg(jpeg_encoder::ColorType::Cmyk),
            OK,
            "converted to RGB",
        ),
        case(
            "jpeg_ycck_adobe",
            g,
            cmyk_jpeg(jpeg_encoder::ColorType::CmykAsYcck),
            OK,
            "converted to RGB",
        ),
        case(
            "png_rgb_16bit",
            g,
            encode(&DynamicImage::ImageRgb16(rgb16), ImageFormat::Png),
            OK,
            "",
        ),
        case(
            "png_rgba_16bit",
            g,
            encode(&DynamicImage::ImageRgba16(rgba16), ImageFormat::Png),
            OK,
            "",
        ),
        case(
            "png_gray_16bit",
            g,
            encode(&DynamicImage::ImageLuma16(gray16), ImageFormat::Png),
            OK,
            "",
        ),
    ]
}

// --- polyglots ----------------------------------------------------------------------------

/// A one-file ZIP (stored) holding `name` with `data`.
fn zip(name: &str, data: &[u8]) -> Vec<u8> {
    let crc = crc32(data);
    let mut out = Vec::new();
    let local = out.len() as u32;
    out.extend_from_slice(b"PK\x03\x04");
    out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    let central = out.len() as u32;
    out.extend_from_slice(b"PK\x01\x02");
    out.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(&local.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    let size = out.len() as u32 - central;
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&central.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

const SCRIPT: &[u8] = b"<html><body><script>alert(document.cookie)</script></body></html>";

fn polyglots() -> Vec<Case> {
    let g = "polyglot";
    let gif_zip = [card_gif(), zip("payload.html", SCRIPT)].concat();
    let jpeg_html_tail = [card_jpeg(false), SCRIPT.to_vec()].concat();
    let jpeg_html_comment = jpeg_with_segments(&[(0xFE, SCRIPT.to_vec())]);
    let png_html_chunk = {
        let png = card_png();
        let iend = png.len() - 12;
        let mut out = png[..iend].to_vec();
        png_chunk(&mut out, b"tEXt", &[b"html\0".as_slice(), SCRIPT].concat());
        out.extend_from_slice(&png[iend..]);
        out
    };
    let zip_gif = [zip("payload.html", SCRIPT), card_gif()].concat();
    vec![
        case(
            "gif_plus_zip",
            g,
            gif_zip,
            OK,
            "the GIF is decoded; re-encoding from pixels drops the ZIP",
        ),
        case(
            "jpeg_plus_html_after_eoi",
            g,
            jpeg_html_tail,
            OK,
            "trailing bytes after EOI are ignored and never stored",
        ),
        case("jpeg_html_in_com_segment", g, jpeg_html_comment, OK, ""),
        case("png_html_in_text_chunk", g, png_html_chunk, OK, ""),
        case(
            "zip_then_gif",
            g,
            zip_gif,
            NOT_AN_IMAGE,
            "sniffed from the first bytes: a ZIP",
        ),
    ]
}

// --- markup and other formats in disguise -----------------------------------------------

fn disguises() -> Vec<Case> {
    let g = "disguised / unsupported format";
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100\" height=\"100\" onload=\"alert(1)\"><rect width=\"100\" height=\"100\"/></svg>";
    let unsupported = refused("unsupported_format");
    vec![
        case("svg", g, svg.to_vec(), unsupported, "415 naming SVG"),
        case(
            "svg_with_xml_prolog_and_bom",
            g,
            [b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n".as_slice(), svg].concat(),
            unsupported,
            "",
        ),
        case(
            "html_doctype",
            g,
            [b"<!DOCTYPE html>".as_slice(), SCRIPT].concat(),
            NOT_AN_IMAGE,
            "",
        ),
        case(
            "html_leading_whitespace",
            g,
            [b"\n\n   ".as_slice(), SCRIPT].concat(),
            NOT_AN_IMAGE,
            "",
        ),
        case(
            "heic_signature_only",
            g,
            b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\x08mdat".to_vec(),
            refused("corrupt_image"),
            "a HEIC with no image in it",
        ),
        case(
            "avif_signature_only",
            g,
            b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf\0\0\0\x08mdat".to_vec(),
            refused("corrupt_image"),
            "an AVIF with no image in it",
        ),
        case(
            "pdf",
            g,
            b"%PDF-1.7\n1 0 obj\n<< /JavaScript (app.alert(1)) >>\nendobj\n".to_vec(),
            NOT_AN_IMAGE,
            "",
        ),
        case(
            "tiff_without_entries",
            g,
            b"II*\0\x08\0\0\0\0\0".to_vec(),
            refused("corrupt_image"),
            "a TIFF whose first IFD is empty",
        ),
        case("one_byte", g, vec![0xFF], NOT_AN_IMAGE, ""),
    ]
}

/// AVIF and TIFF containers that lie about sizes, locations and links.
fn containers() -> Vec<Case> {
    use crate::forge::{Heif, avif_grid, jxl_claiming, tiff_claiming};
    let g = "AVIF / TIFF container lies";
    let mut self_grid = avif_grid(1, 1, (64, 64), (64, 64), 1);
    self_grid.references = vec![(*b"dimg", 1, vec![1])];
    let mut overlapping = Heif::single(64, 64, vec![0; 64 * 1024]);
    overlapping.locations[0].1 = vec![(0, 64 * 1024); 60_000];
    let mut past_end = Heif::single(64, 64, vec![0; 64]);
    past_end.locations[0].1 = vec![(1 << 31, 64)];
    vec![
        case(
            "avif_ispe_65535_squared",
            g,
            Heif::single(65_535, 65_535, vec![0; 64]).bytes(),
            refused("dimensions_too_large"),
            "",
        ),
        case(
            "avif_grid_of_1_gpx",
            g,
            avif_grid(16, 16, (32_768, 32_768), (2048, 2048), 256).bytes(),
            refused("too_many_pixels"),
            "",
        ),
        case(
            "avif_grid_of_65025_tiles",
            g,
            avif_grid(255, 255, (8_000, 8_000), (512, 512), 65_025).bytes(),
            refused("unsupported_feature"),
            "more references than are read",
        ),
        case(
            "avif_grid_containing_itself",
            g,
            self_grid.bytes(),
            refused("corrupt_image"),
            "",
        ),
        case(
            "avif_overlapping_extents",
            g,
            overlapping.bytes(),
            refused("corrupt_image"),
            "3.7 GiB if joined",
        ),
        case(
            "avif_data_past_the_end",
            g,
            past_end.bytes(),
            refused("corrupt_image"),
            "",
        ),
        case(
            "avif_av1_of_zeros",
            g,
            Heif::single(64, 64, vec![0; 64]).bytes(),
            refused("corrupt_image"),
            "",
        ),
        case(
            "heic_ispe_65535_squared",
            g,
            Heif::single(65_535, 65_535, vec![0; 64]).hevc().bytes(),
            refused("dimensions_too_large"),
            "",
        ),
        case(
            "heic_grid_of_65025_tiles",
            g,
            avif_grid(255, 255, (8_000, 8_000), (512, 512), 65_025)
                .hevc()
                .bytes(),
            refused("unsupported_feature"),
            "more references than are read",
        ),
        case(
            "heic_hevc_of_zeros",
            g,
            Heif::single(64, 64, vec![0; 64]).hevc().bytes(),
            refused("corrupt_image"),
            "",
        ),
        case(
            "jxl_claiming_2_30_square",
            g,
            jxl_claiming(1 << 30, 1 << 30, None),
            refused("dimensions_too_large"),
            "",
        ),
        case(
            "jxl_icc_claiming_256_mib",
            g,
            jxl_claiming(64, 64, Some(1 << 28)),
            refused("corrupt_image"),
            "jxl-oxide would allocate it up front",
        ),
        case(
            "jxl_header_without_frames",
            g,
            jxl_claiming(64, 64, None),
            refused("corrupt_image"),
            "",
        ),
        case(
            "tiff_100000_wide",
            g,
            tiff_claiming(100_000, 10, None, 0),
            refused("dimensions_too_large"),
            "",
        ),
        case(
            "tiff_ifd_loop",
            g,
            tiff_claiming(64, 48, None, 8),
            refused("corrupt_image"),
            "",
        ),
        case(
            "tiff_strip_past_the_end",
            g,
            tiff_claiming(64, 48, Some(1 << 30), 0),
            refused("corrupt_image"),
            "",
        ),
    ]
}

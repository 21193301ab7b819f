//! Writes seed inputs: `cargo run -p imgsvc-fuzz --example seeds -- OUT [CORPUS]`.
//!
//! Without CORPUS: the tiny synthetic seeds committed in `fuzz/seeds/<target>/` (images made
//! in code, forms, tokens, bodies, flag files). With CORPUS (`../shared/corpus`): images
//! for `probe` and `process` made from the corpus photos, decoded, shrunk to at most 96 px and
//! re-encoded as JPEG/PNG/GIF/WebP, with and without an EXIF orientation (never committed:
//! `fuzz/run-long.sh` and the CI smoke make them at run time). Deterministic.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use image::{DynamicImage, ImageFormat, RgbaImage};
use imgsvc_testkit::forge::encode;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let out = PathBuf::from(args.next().ok_or("usage: seeds OUT [CORPUS]")?);
    match args.next() {
        Some(corpus) => from_corpus(&out, Path::new(&corpus)),
        None => synthetic(&out),
    }
}

fn write(out: &Path, target: &str, name: &str, data: &[u8]) -> Result<()> {
    let dir = out.join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), data)?;
    Ok(())
}

/// A JPEG with an EXIF APP1 segment carrying `orientation`, inserted after SOI.
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08"); // big endian, IFD at 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let length = u16::try_from(app1.len() + 2).unwrap_or(u16::MAX);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn image_seeds(out: &Path, prefix: &str, image: &DynamicImage) -> Result<()> {
    for target in ["probe", "process"] {
        let rgb = DynamicImage::ImageRgb8(image.to_rgb8());
        let jpeg = encode(&rgb, ImageFormat::Jpeg);
        write(out, target, &format!("{prefix}.jpg"), &jpeg)?;
        write(
            out,
            target,
            &format!("{prefix}-exif6.jpg"),
            &with_orientation(&jpeg, 6),
        )?;
        let gray = DynamicImage::ImageLuma8(image.to_luma8());
        write(
            out,
            target,
            &format!("{prefix}-gray.jpg"),
            &encode(&gray, ImageFormat::Jpeg),
        )?;
        write(
            out,
            target,
            &format!("{prefix}.png"),
            &encode(image, ImageFormat::Png),
        )?;
        let wide = DynamicImage::ImageRgba16(image.to_rgba16());
        write(
            out,
            target,
            &format!("{prefix}-16bit.png"),
            &encode(&wide, ImageFormat::Png),
        )?;
        write(
            out,
            target,
            &format!("{prefix}.gif"),
            &encode(image, ImageFormat::Gif),
        )?;
        write(
            out,
            target,
            &format!("{prefix}.webp"),
            &encode(image, ImageFormat::WebP),
        )?;
    }
    Ok(())
}

fn from_corpus(out: &Path, corpus: &Path) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(corpus)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| {
                ["jpg", "png", "gif", "webp"].contains(&e.to_string_lossy().as_ref())
            })
        })
        .collect();
    entries.sort();
    for path in entries {
        let Ok(image) = image::open(&path) else {
            continue;
        };
        let small = image.thumbnail(96, 96);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        image_seeds(out, &format!("corpus-{stem}"), &small)?;
    }
    Ok(())
}

fn synthetic(out: &Path) -> Result<()> {
    // Images: a gradient with a translucent corner, in every accepted format, plus a
    // panorama and a two-frame GIF.
    let gradient = RgbaImage::from_fn(24, 16, |x, y| {
        let alpha = if x < 6 && y < 6 { 128 } else { 255 };
        image::Rgba([(x * 10) as u8, (y * 15) as u8, 128, alpha])
    });
    image_seeds(out, "gradient", &DynamicImage::ImageRgba8(gradient))?;
    let panorama = RgbaImage::from_fn(300, 8, |x, _| image::Rgba([(x % 256) as u8, 40, 200, 255]));
    image_seeds(out, "panorama", &DynamicImage::ImageRgba8(panorama))?;
    let mut gif = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut gif);
        let frames = (0..2u8).map(|i| {
            image::Frame::new(RgbaImage::from_pixel(
                8,
                8,
                image::Rgba([i * 100, 50, 50, 255]),
            ))
        });
        encoder.encode_frames(frames)?;
    }
    write(out, "probe", "two-frames.gif", &gif)?;
    write(out, "process", "two-frames.gif", &gif)?;

    // Upload forms.
    let b = imgsvc_fuzz::multipart::BOUNDARY;
    let part = |headers: &str, body: &[u8]| {
        let mut p =
            format!("--{b}\r\nContent-Disposition: form-data; {headers}\r\n\r\n").into_bytes();
        p.extend_from_slice(body);
        p.extend_from_slice(b"\r\n");
        p
    };
    let end = format!("--{b}--\r\n").into_bytes();
    let file = part(
        "name=\"file\"; filename=\"photo.jpg\"\r\nContent-Type: image/jpeg",
        b"\xFF\xD8\xFF\xE0 not really a jpeg",
    );
    let forms: [(&str, Vec<Vec<u8>>); 5] = [
        (
            "full",
            vec![
                file.clone(),
                part("name=\"title\"", b"Dragonfly"),
                part("name=\"tags\"", b"insects, macro,insects"),
                part("name=\"tags\"", b"blue"),
                part("name=\"albumId\"", b"summer-2026"),
            ],
        ),
        ("file-only", vec![file.clone()]),
        ("no-file", vec![part("name=\"title\"", b"t")]),
        (
            "unknown-field",
            vec![file.clone(), part("name=\"owner\"", b"bob")],
        ),
        (
            "bad-album",
            vec![file.clone(), part("name=\"albumId\"", b"../etc")],
        ),
    ];
    for (name, parts) in forms {
        let mut body: Vec<u8> = parts.concat();
        body.extend_from_slice(&end);
        write(out, "multipart", name, &body)?;
    }

    // Cursors: a position to encode (odd mode), and client cursors (even mode).
    write(
        out,
        "cursor",
        "position",
        b"\x01\x05\x00\x01\x07\x002026-01-01T00:00:00.000Z\xFF01J00000000000000000000000\xFFalice\xFFalbum-1",
    )?;
    write(out, "cursor", "client", b"\x00eyJ0IjoiMjAyNiJ9.AAAA")?;

    // Tokens: HS256 and RS256 with a few defect sets; raw headers; delegation.
    let claims = |defects: u16, exp: u8, sub: &str, scope: &str, obo: &str| {
        let mut v = defects.to_le_bytes().to_vec();
        v.push(exp);
        v.extend_from_slice(sub.as_bytes());
        v.push(0xFF);
        v.extend_from_slice(scope.as_bytes());
        v.push(0xFF);
        v.extend_from_slice(obo.as_bytes());
        v
    };
    for (mode, name) in [(1u8, "hs256"), (2, "rs256")] {
        for (i, defects) in [
            0u16,
            1 << 14,
            1 << 10,
            1 << 9,
            1 << 8,
            1 << 5,
            1 << 11,
            1 << 7,
        ]
        .into_iter()
        .enumerate()
        {
            let mut seed = vec![mode];
            seed.extend(claims(defects, 10, "alice", "images:service", "bob"));
            write(out, "auth", &format!("{name}-{i}"), &seed)?;
        }
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","exp":4102444800}"#);
    let raw = format!("\x00Bearer {header}.{payload}.c2lnbmF0dXJl\u{FF}alice");
    write(out, "auth", "raw", raw.as_bytes())?;
    write(out, "auth", "delegate", b"\x03\x01auth0|alice")?;

    // PATCH and complete bodies.
    for (i, seed) in [
        &b"\x00{\"title\":\" Blue dragonfly \",\"tags\":[\"a\",\" b\",\"a\"],\"albumId\":\"al-1\",\"version\":3}"[..],
        b"\x00{\"title\":null,\"albumId\":null}\xFFW/\"3\"",
        b"\x00{\"version\":2}\xFF\"3\"",
        b"\x00{\"tags\":[1]}",
        b"\x00[]",
        b"\x01{\"title\":\"t\",\"tags\":[\"x\"],\"albumId\":\"a\"}",
        b"\x01 \n",
    ]
    .into_iter()
    .enumerate()
    {
        write(out, "patch", &format!("body-{i}"), seed)?;
    }

    // Flag files (even mode) and lookups (odd mode).
    write(
        out,
        "flags",
        "file",
        b"\x00# cut over\nENABLE_DYNAMODB_DUAL_WRITE=true\nUSE_IMAGE_SERVICE = on\nROLLOUT_PERCENTAGE=10\nSHADOW_READS=no\nIMAGE_SERVICE_TIMEOUT_MS=250\nROLLOUT_PERCENTAGE=+50\n",
    )?;
    write(out, "flags", "bad-file", b"\x00ROLLOUT_PERCENTAGE=101\n")?;
    write(
        out,
        "flags",
        "lookup",
        b"\x01\x02100\xFF\x04 60000 \xFF\x00yes\xFF",
    )?;
    Ok(())
}

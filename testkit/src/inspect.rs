//! Readers for checking the service's outputs.

use image::{DynamicImage, ImageFormat};

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

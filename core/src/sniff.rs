//! Format detection from the bytes alone. A file name or Content-Type is never consulted.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What the first bytes say a file is. Only the first four are decoded; the rest are named so
/// a refusal can say what was actually uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Gif,
    Heic,
    Avif,
    Jxl,
    Tiff,
    Bmp,
    Ico,
    Psd,
    Pdf,
    Svg,
    Html,
    Xml,
    Zip,
    Unknown,
}

impl Format {
    /// Whether `process` decodes this format (on this target: the browser package's base
    /// module, `wasm32-unknown-unknown`, has no AVIF, HEIC, JPEG XL or TIFF decoder; the
    /// package loads its codecs module for those).
    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }

    /// Every format imgsvc accepts, on every host: the service, the sandbox and the browser
    /// package (whose base module leaves the last four to its codecs module). Refusals list
    /// these, so a browser and the server say the same thing.
    pub const ACCEPTED: &[Format] = &[
        Format::Jpeg,
        Format::Png,
        Format::Webp,
        Format::Gif,
        Format::Avif,
        Format::Heic,
        Format::Jxl,
        Format::Tiff,
    ];

    /// Every format `process` decodes on this target, in the order messages list them.
    #[cfg(extra_codecs)]
    pub const SUPPORTED: &[Format] = Self::ACCEPTED;
    /// Every format `process` decodes on this target, in the order messages list them.
    #[cfg(not(extra_codecs))]
    pub const SUPPORTED: &[Format] = &[Format::Jpeg, Format::Png, Format::Webp, Format::Gif];

    /// The name people know the format by ("JPEG", "WebP"), for messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Webp => "WebP",
            Format::Gif => "GIF",
            Format::Heic => "HEIC",
            Format::Avif => "AVIF",
            Format::Jxl => "JPEG XL",
            Format::Tiff => "TIFF",
            Format::Bmp => "BMP",
            Format::Ico => "ICO",
            Format::Psd => "PSD",
            Format::Pdf => "PDF",
            Format::Svg => "SVG",
            Format::Html => "HTML",
            Format::Xml => "XML",
            Format::Zip => "ZIP",
            Format::Unknown => "unknown",
        }
    }

    /// Whether this is a picture format at all (supported or not). Hosts answer "not an
    /// image" (400) for the others and "unsupported image format" (415) for these.
    pub fn is_image(self) -> bool {
        !matches!(
            self,
            Format::Pdf | Format::Html | Format::Xml | Format::Zip | Format::Unknown
        )
    }

    /// The lowercase name used in JSON and error codes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Gif => "gif",
            Format::Heic => "heic",
            Format::Avif => "avif",
            Format::Jxl => "jxl",
            Format::Tiff => "tiff",
            Format::Bmp => "bmp",
            Format::Ico => "ico",
            Format::Psd => "psd",
            Format::Pdf => "pdf",
            Format::Svg => "svg",
            Format::Html => "html",
            Format::Xml => "xml",
            Format::Zip => "zip",
            Format::Unknown => "unknown",
        }
    }

    pub(crate) fn image_format(self) -> Option<image::ImageFormat> {
        match self {
            Format::Jpeg => Some(image::ImageFormat::Jpeg),
            Format::Png => Some(image::ImageFormat::Png),
            Format::Webp => Some(image::ImageFormat::WebP),
            Format::Gif => Some(image::ImageFormat::Gif),
            #[cfg(extra_codecs)]
            Format::Tiff => Some(image::ImageFormat::Tiff),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Identify `bytes` by signature. Binary signatures are matched at offset 0 only, so a
/// polyglot is whatever it claims to be first (a GIF with a ZIP appended is a GIF).
pub fn sniff(bytes: &[u8]) -> Format {
    const BINARY: &[(&[u8], Format)] = &[
        (b"\xFF\xD8\xFF", Format::Jpeg),
        (b"\x89PNG\r\n\x1A\n", Format::Png),
        (b"GIF87a", Format::Gif),
        (b"GIF89a", Format::Gif),
        (b"II*\0", Format::Tiff),
        (b"MM\0*", Format::Tiff),
        (b"BM", Format::Bmp),
        (b"\0\0\x01\0", Format::Ico),
        (b"8BPS", Format::Psd),
        (b"%PDF-", Format::Pdf),
        (b"PK\x03\x04", Format::Zip),
        (b"\xFF\x0A", Format::Jxl),
        (b"\0\0\0\x0CJXL \r\n\x87\n", Format::Jxl),
    ];
    if let Some((_, format)) = BINARY.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return *format;
    }
    if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Format::Webp;
    }
    if let Some(format) = sniff_isobmff(bytes) {
        return format;
    }
    sniff_text(bytes)
}

/// HEIF-family files are ISO-BMFF: a `ftyp` box whose major brand names the codec.
fn sniff_isobmff(bytes: &[u8]) -> Option<Format> {
    if bytes.len() < 12 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let brand = &bytes[8..12];
    Some(match brand {
        b"avif" | b"avis" => Format::Avif,
        b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" => Format::Heic,
        // The generic HEIF brands say nothing of the codec: an AVIF may carry `mif1` as its
        // major brand and `avif` among the compatible ones (which follow the minor version).
        b"mif1" | b"msf1" => {
            let size =
                usize::try_from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
                    .unwrap_or(0)
                    .min(bytes.len());
            let compatible = bytes.get(16..size).unwrap_or_default();
            if compatible
                .chunks_exact(4)
                .any(|b| b == b"avif" || b == b"avis")
            {
                Format::Avif
            } else {
                Format::Heic
            }
        }
        _ => Format::Unknown,
    })
}

/// Markup is recognised by its first tag, after an optional BOM and whitespace, looking only
/// at the first kilobyte.
fn sniff_text(bytes: &[u8]) -> Format {
    let head = &bytes[..bytes.len().min(1024)];
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let lower: Vec<u8> = head[start..].iter().map(u8::to_ascii_lowercase).collect();
    let contains = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    if !lower.starts_with(b"<") {
        return Format::Unknown;
    }
    if contains(b"<svg") {
        Format::Svg
    } else if lower.starts_with(b"<!doctype html")
        || contains(b"<html")
        || contains(b"<body")
        || contains(b"<script")
    {
        Format::Html
    } else if lower.starts_with(b"<?xml") {
        Format::Xml
    } else {
        Format::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_signatures() {
        let cases: &[(&[u8], Format)] = &[
            (b"\xFF\xD8\xFF\xE0rest", Format::Jpeg),
            (b"\x89PNG\r\n\x1A\nrest", Format::Png),
            (b"GIF89a....", Format::Gif),
            (b"RIFF\0\0\0\0WEBPVP8 ", Format::Webp),
            (b"RIFF\0\0\0\0WAVEfmt ", Format::Unknown),
            (b"\0\0\0\x18ftypheic\0\0\0\0", Format::Heic),
            (b"\0\0\0\x1cftypavif\0\0\0\0", Format::Avif),
            (b"\0\0\0\x18ftypmif1\0\0\0\0miafavif", Format::Avif),
            (b"\0\0\0\x18ftypmif1\0\0\0\0miafheic", Format::Heic),
            (b"\0\0\0\x18ftypmp42\0\0\0\0", Format::Unknown),
            (b"%PDF-1.7\n", Format::Pdf),
            (b"II*\0\x08\0\0\0", Format::Tiff),
            (b"BM\x36\0\0\0", Format::Bmp),
            (b"PK\x03\x04", Format::Zip),
            (
                b"\xEF\xBB\xBF  <svg xmlns='http://www.w3.org/2000/svg'/>",
                Format::Svg,
            ),
            (b"<?xml version='1.0'?>\n<svg/>", Format::Svg),
            (b"<?xml version='1.0'?>\n<note/>", Format::Xml),
            (b"\n<!DOCTYPE html><p>hi", Format::Html),
            (b"<HTML><BODY>", Format::Html),
            (b"plain text", Format::Unknown),
            (b"", Format::Unknown),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                sniff(bytes),
                *expected,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn every_accepted_format_is_decoded_here_and_refusals_list_them_all() {
        assert_eq!(Format::SUPPORTED, Format::ACCEPTED);
        let message = crate::ProcessError::UnsupportedFormat {
            detected: Format::Bmp,
        }
        .to_string();
        assert!(
            message.ends_with("(supported: JPEG, PNG, WebP, GIF, AVIF, HEIC, JPEG XL, TIFF)"),
            "{message}"
        );
    }

    #[test]
    fn the_decoded_formats_are_supported_and_no_others() {
        let supported: Vec<_> = [
            Format::Jpeg,
            Format::Png,
            Format::Webp,
            Format::Gif,
            Format::Avif,
            Format::Tiff,
            Format::Heic,
            Format::Jxl,
            Format::Bmp,
            Format::Svg,
        ]
        .into_iter()
        .filter(|f| f.is_supported())
        .collect();
        assert_eq!(
            supported,
            [
                Format::Jpeg,
                Format::Png,
                Format::Webp,
                Format::Gif,
                Format::Avif,
                Format::Tiff,
                Format::Heic,
                Format::Jxl,
            ]
        );
    }
}

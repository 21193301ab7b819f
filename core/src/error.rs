//! One error type for everything the core refuses, each variant with a stable machine code.

use crate::sniff::Format;

/// Why the core refused an input. `code()` is stable API: hosts map it to HTTP statuses and
/// clients match on it, so variants may be added but codes never change meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    #[error("the input is empty")]
    EmptyInput,

    #[error("the input is {actual} bytes; the limit is {limit} bytes")]
    TooLarge { actual: u64, limit: u64 },

    #[error("the image is {width}x{height}; each side may be at most {limit} pixels")]
    DimensionsTooLarge { width: u32, height: u32, limit: u32 },

    #[error("the image is {width}x{height} = {pixels} pixels; the limit is {limit} pixels")]
    TooManyPixels {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },

    #[error("the animation has more than {limit} frames")]
    TooManyFrames { limit: u32 },

    #[error("decoding would need more than the {limit} bytes of memory allowed")]
    MemoryLimit { limit: u64 },

    #[error("{} (supported: {})", unsupported(*detected), supported_list())]
    UnsupportedFormat { detected: Format },

    #[error("the {format} image is corrupt or truncated: {reason}")]
    CorruptImage { format: Format, reason: String },

    #[error("the {format} image uses a feature we do not decode: {reason}")]
    UnsupportedFeature { format: Format, reason: String },

    #[error("encoding the output failed: {reason}")]
    EncodeFailed { reason: String },

    #[error("internal error while {stage}: {reason}")]
    Internal { stage: &'static str, reason: String },
}

impl ProcessError {
    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::EmptyInput => "empty_input",
            Self::TooLarge { .. } => "too_large",
            Self::DimensionsTooLarge { .. } => "dimensions_too_large",
            Self::TooManyPixels { .. } => "too_many_pixels",
            Self::TooManyFrames { .. } => "too_many_frames",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::UnsupportedFormat { .. } => "unsupported_format",
            Self::CorruptImage { .. } => "corrupt_image",
            Self::UnsupportedFeature { .. } => "unsupported_feature",
            Self::EncodeFailed { .. } => "encode_failed",
            Self::Internal { .. } => "internal",
        }
    }

    /// True when the input was refused (the client's fault); false for our own failures.
    pub fn is_input_error(&self) -> bool {
        !matches!(self, Self::EncodeFailed { .. } | Self::Internal { .. })
    }
}

/// What every host accepts (not only this build): the browser package's base module hands
/// AVIF, HEIC, JPEG XL and TIFF to its codecs module, so its refusals name them too.
fn supported_list() -> String {
    Format::ACCEPTED
        .iter()
        .map(|f| f.display_name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn unsupported(detected: Format) -> String {
    match detected {
        Format::Unknown => "the input is not an image format we recognise".to_owned(),
        other => format!("{other} is not a supported image format"),
    }
}

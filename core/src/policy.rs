//! Hard limits, checked before any pixel buffer is allocated.

use serde::{Deserialize, Serialize};

/// The limits one `process` call works under. `Policy::default()` is what the service uses;
/// hosts may only tighten it (see [`Policy::tightened_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Largest accepted input, in bytes. Default 10 MiB, the seeds' upload limit.
    pub max_input_bytes: u64,
    /// Largest accepted width or height, in pixels.
    pub max_side: u32,
    /// Largest accepted width × height, the decompression-bomb guard.
    pub max_pixels: u64,
    /// Most animation frames accepted. Only the first frame is decoded; the others are
    /// counted without decoding (GIF: no LZW; WebP: chunk headers; APNG: `acTL`), so the
    /// count costs one pass over input the byte limit already bounds. No limit by default;
    /// a host may set one.
    pub max_frames: u32,
    /// Cap on any single allocation the decoders make, in bytes.
    pub max_alloc_bytes: u64,
}

impl Policy {
    /// 10 MiB: the seeds' documented upload limit ("10 MB ok, 11 MB → 413").
    pub const DEFAULT_MAX_INPUT_BYTES: u64 = 10 * 1024 * 1024;
    /// 64 Mpx covers every consumer camera at full resolution (61 Mpx full frame is the
    /// largest common sensor) while a worst-case 16-bit RGBA decode stays at 512 MiB.
    pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;
    /// Panoramas are long: allow 32 768 px on a side; `max_pixels` still bounds memory.
    pub const DEFAULT_MAX_SIDE: u32 = 32_768;
    /// No count limit: a count refuses ordinary animations (a 111 KB GIF of 400 frames; sharp
    /// and imgproxy take its first frame) while the scan's cost is bounded by bytes, not
    /// frames: 10 MiB of the smallest GIF frames (748,981 of 14 bytes) is one scan of
    /// ~150 ms with no per-frame allocation (core/tests/hostile.rs).
    pub const DEFAULT_MAX_FRAMES: u32 = u32::MAX;
    /// 64 Mpx × 8 bytes (16-bit RGBA): the largest buffer a permitted image can need.
    pub const DEFAULT_MAX_ALLOC_BYTES: u64 = 512 * 1024 * 1024;

    /// A policy whose every limit is the stricter of `self` and `other`: how a caller
    /// narrows limits without ever loosening them.
    #[must_use]
    pub fn tightened_by(self, other: Policy) -> Policy {
        Policy {
            max_input_bytes: self.max_input_bytes.min(other.max_input_bytes),
            max_side: self.max_side.min(other.max_side),
            max_pixels: self.max_pixels.min(other.max_pixels),
            max_frames: self.max_frames.min(other.max_frames),
            max_alloc_bytes: self.max_alloc_bytes.min(other.max_alloc_bytes),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_input_bytes: Self::DEFAULT_MAX_INPUT_BYTES,
            max_side: Self::DEFAULT_MAX_SIDE,
            max_pixels: Self::DEFAULT_MAX_PIXELS,
            max_frames: Self::DEFAULT_MAX_FRAMES,
            max_alloc_bytes: Self::DEFAULT_MAX_ALLOC_BYTES,
        }
    }
}

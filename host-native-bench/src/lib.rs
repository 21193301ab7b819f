//! `imgsvc-native-bench`: what the benches and measurement binaries share — the corpus, the
//! wasip1 guest module, percentiles and memory readings.
//!
//! - `benches/stages.rs` (criterion): each pipeline stage on three corpus photos, the whole
//!   pipeline sequential and parallel, and the same pipeline inside wasmtime.
//! - `budget`: the upload path (core + embedded stores) over the whole corpus against the
//!   seeds' P95 budget, as a table and JSON.
//! - `compare`: imgsvc beside sharp (`sharp/compare.sh` runs both): time, size, SSIM.
//! - `load`: loopback load generator for a running `imgsvc serve`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The photos the per-stage benches use: a typical 2.3 Mpx upload, a 13 Mpx phone photo
/// with EXIF orientation 6, and the corpus's largest image by pixels (24 Mpx).
pub const BENCH_PHOTOS: [(&str, &str); 3] = [
    ("small_2mp", "mate_RainDrops.jpg"),
    ("phone_13mp", "exif6_lomiri16_Dragonfly.jpg"),
    ("largest_24mp", "lomiri20_Painting-Colors.jpg"),
];

/// The repository's root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `../shared/corpus` beside the repository, unless `IMGSVC_CORPUS` says otherwise.
pub fn corpus_dir() -> PathBuf {
    std::env::var_os("IMGSVC_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/corpus"))
}

/// Every image in the corpus (not the MANIFEST, README or attributions), sorted by name.
pub fn corpus_photos(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut photos = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("{} (the corpus lives beside the project)", dir.display()))?
    {
        let path = entry?.path();
        let is_image = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            matches!(
                e,
                "jpg" | "jpeg" | "png" | "webp" | "gif" | "avif" | "tif" | "tiff" | "heic" | "jxl"
            )
        });
        if is_image {
            photos.push(path);
        }
    }
    photos.sort();
    if photos.is_empty() {
        bail!("no photos in {}", dir.display());
    }
    Ok(photos)
}

/// The file name of a path, for tables.
pub fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Nearest-rank percentile (`p` in 0–100) of sorted values; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of unsorted values; NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}

/// Round to two decimals, for tables and JSON.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A `/proc/{pid}/status` field in KiB (`VmRSS`, `VmHWM`); `pid` "self" for this process.
pub fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This process's peak resident memory so far, in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    status_kib("self", "VmHWM").map(|kib| kib as f64 / 1024.0)
}

/// The sandbox's guest module (the core's `wasm32-wasip1` build): `IMGSVC_SANDBOX_GUEST` if
/// set, else built with cargo into this workspace's target dir (the same build the
/// sandbox's tests use, so it is usually already there).
pub fn guest_module() -> anyhow::Result<Vec<u8>> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = imgsvc_sandbox::guest_module_path(&target_dir)?;
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 95.0), 95.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        assert!(peak_rss_mib().is_some_and(|mib| mib > 1.0));
        assert!(status_kib("self", "VmRSS").is_some());
        assert_eq!(status_kib("self", "VmNope"), None);
    }
}

//! The shared corpus of real photos, `../shared/corpus` beside the project, with its
//! `MANIFEST.tsv`.

use std::path::{Path, PathBuf};

/// `../shared/corpus`, beside the project root.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

/// The path of one corpus photo.
pub fn photo_path(file: &str) -> PathBuf {
    corpus_dir().join(file)
}

/// The bytes of one corpus photo.
pub fn read_corpus(file: &str) -> Vec<u8> {
    std::fs::read(photo_path(file)).unwrap()
}

/// One row of the corpus MANIFEST.tsv.
#[derive(Debug, Clone)]
pub struct CorpusEntry {
    pub file: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    pub format: String,
    pub bands: u32,
    pub orientation: u8,
}

/// Every row of the corpus MANIFEST.tsv.
pub fn corpus() -> Vec<CorpusEntry> {
    let manifest = std::fs::read_to_string(corpus_dir().join("MANIFEST.tsv"))
        .expect("../shared/corpus/MANIFEST.tsv must exist beside the project");
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (file, bytes, width, height, format, bands, orientation) = (
        col("file"),
        col("bytes"),
        col("width"),
        col("height"),
        col("format"),
        col("bands"),
        col("exif_orientation"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            CorpusEntry {
                file: f[file].to_owned(),
                bytes: f[bytes].parse().unwrap(),
                width: f[width].parse().unwrap(),
                height: f[height].parse().unwrap(),
                format: f[format].to_owned(),
                bands: f[bands].parse().unwrap(),
                orientation: f[orientation].parse().unwrap_or(1),
            }
        })
        .collect()
}

/// `testkit/data/iphone-like.heic`: a small HEIC shaped like an iPhone's (grid of tiles,
/// `irot`, Display P3 ICC, EXIF orientation), shown 120×160 (see `testkit/data/README.md`).
pub fn iphone_like_heic() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/iphone-like.heic");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

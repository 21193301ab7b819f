//! The native core's outputs for the JavaScript parity tests (Node and Chromium):
//!
//! ```sh
//! cargo run -p imgsvc-wasm --example native_reference -- ../shared/corpus OUT.json
//! cargo run -p imgsvc-wasm --example native_reference -- FIXTURES/manifest.json OUT.json
//! ```
//!
//! One JSON object per input file (`MANIFEST.tsv`, `*.md`, `*.txt` skipped), in the shape
//! the package's `process` returns, with SHA-256 digests in place of the output bytes. Given
//! the format fixtures' `manifest.json` (scripts/format-fixtures.py), its inputs instead,
//! each with its `path`.

use std::error::Error;
use std::path::{Path, PathBuf};

use imgsvc_core::{Encoded, Policy};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: native_reference CORPUS_DIR OUT.json".into());
    };
    let dir = PathBuf::from(dir);
    let files = if dir.is_file() {
        manifest_inputs(&dir)?
    } else {
        corpus_files(&dir)?
    };
    let mut photos = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(path)?;
        photos.push(match imgsvc_core::process(&bytes, &Policy::default()) {
            Ok(p) => {
                let s = &p.source;
                json!({
                    "file": name,
                    "path": path,
                    "ok": true,
                    "source": {
                        "format": s.format.name(),
                        "bytes": s.bytes,
                        "width": s.width,
                        "height": s.height,
                        "orientedWidth": s.oriented_width,
                        "orientedHeight": s.oriented_height,
                        "orientation": s.orientation,
                        "frames": s.frames,
                        "hasAlpha": s.has_alpha,
                        "convertedToSrgb": s.converted_to_srgb,
                    },
                    "display": output(&p.display),
                    "thumbnail": output(&p.thumbnail),
                    "thumbhash": hex(&p.thumbhash),
                })
            }
            Err(e) => {
                json!({ "file": name, "path": path, "ok": false, "code": e.code(), "message": e.to_string() })
            }
        });
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&photos)?)?;
    Ok(())
}

fn corpus_files(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| {
        !matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("tsv" | "md" | "txt")
        )
    });
    files.sort();
    Ok(files)
}

/// The `input` of every entry of the format fixtures' manifest, relative to its directory.
fn manifest_inputs(manifest: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let base = manifest.parent().unwrap_or(Path::new("."));
    let entries: Vec<Value> = serde_json::from_slice(&std::fs::read(manifest)?)?;
    entries
        .iter()
        .map(|entry| match entry["input"].as_str() {
            Some(input) => Ok(base.join(input)),
            None => Err(format!("{}: an entry without an input", manifest.display()).into()),
        })
        .collect()
}

fn output(e: &Encoded) -> Value {
    json!({
        "width": e.width,
        "height": e.height,
        "bytes": e.data.len(),
        "sha256": hex(&Sha256::digest(&e.data)),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

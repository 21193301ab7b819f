//! The native core's outputs for the JavaScript parity tests (Node and Chromium):
//!
//! ```sh
//! cargo run -p imgsvc-wasm --example native_reference -- ../shared/corpus OUT.json
//! ```
//!
//! One JSON object per input file (`MANIFEST.tsv`, `*.md`, `*.txt` skipped), in the shape
//! the package's `process` returns, with SHA-256 digests in place of the output bytes.

use std::error::Error;
use std::path::PathBuf;

use imgsvc_core::{Encoded, Policy};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: native_reference CORPUS_DIR OUT.json".into());
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| {
        !matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("tsv" | "md" | "txt")
        )
    });
    files.sort();
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
                json!({ "file": name, "ok": false, "code": e.code(), "message": e.to_string() })
            }
        });
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&photos)?)?;
    Ok(())
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

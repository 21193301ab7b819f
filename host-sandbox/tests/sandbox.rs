//! The core's `wasm32-wasip1` build inside wasmtime against the native core: the same bytes
//! for every photo in `../shared/corpus`, and the sandbox's own limits.
//!
//! The guest is built by this test (`cargo build -p imgsvc-sandbox-guest --target
//! wasm32-wasip1`, in the same target dir) unless `IMGSVC_SANDBOX_GUEST` names a prebuilt
//! `.wasm`. It needs `rustup target add wasm32-wasip1` (scripts/test-wasm does it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use imgsvc_core::Policy;
use imgsvc_sandbox::{Limits, Sandbox, SandboxError};

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The guest module's bytes, built once per test process.
fn guest() -> &'static [u8] {
    static GUEST: OnceLock<Vec<u8>> = OnceLock::new();
    GUEST.get_or_init(|| {
        // The workspace's own target dir (the parent of `tmp/`), so the guest's build is
        // shared with any other wasip1 build; nothing else holds it while tests run.
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
        std::fs::read(imgsvc_sandbox::guest_module_path(target_dir).unwrap()).unwrap()
    })
}

fn corpus() -> Vec<PathBuf> {
    let dir = repo_root().join("../shared/corpus");
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the corpus lives beside the project)",
                dir.display()
            )
        })
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            !matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("tsv" | "md" | "txt")
            )
        })
        .collect();
    photos.sort();
    assert!(photos.len() >= 20, "corpus looks empty: {}", dir.display());
    photos
}

#[test]
fn wasip1_output_is_byte_identical_to_native_for_every_corpus_photo() {
    let sandbox = Sandbox::new(guest()).unwrap();
    let photos = corpus();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = photos.len().div_ceil(workers);
    let report: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = photos
            .chunks(chunk)
            .map(|chunk| {
                scope.spawn(|| {
                    chunk
                        .iter()
                        .map(|p| compare(&sandbox, p))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let failures: Vec<&String> = report
        .iter()
        .filter(|line| line.starts_with("MISMATCH"))
        .collect();
    println!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{} of {} photos differ:\n{}",
        failures.len(),
        report.len(),
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The AVIF, TIFF, HEIC and JPEG XL fixtures (`scripts/format-fixtures.py`, into the
/// directory `IMGSVC_FORMAT_FIXTURES` names; scripts/test sets it) through both: the new
/// decoders keep the same-bytes rule too.
#[test]
fn wasip1_output_is_byte_identical_to_native_for_every_format_fixture() {
    let dir = PathBuf::from(std::env::var_os("IMGSVC_FORMAT_FIXTURES").expect(
        "IMGSVC_FORMAT_FIXTURES is not set: run scripts/format-fixtures.py DIR and set it to DIR \
         (scripts/test does both)",
    ));
    let manifest: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let sandbox = Sandbox::new(guest()).unwrap();
    let report: Vec<String> = manifest
        .iter()
        .map(|entry| {
            let input = Path::new(entry["input"].as_str().unwrap());
            compare(&sandbox, &dir.join(input))
        })
        .collect();
    println!("{}", report.join("\n"));
    let failures: Vec<&String> = report
        .iter()
        .filter(|l| l.starts_with("MISMATCH"))
        .collect();
    assert!(
        failures.len() < report.len() && failures.is_empty(),
        "{failures:#?}"
    );
}

/// One line: `ok …` or `MISMATCH …` naming the first stage that differs.
fn compare(sandbox: &Sandbox, path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy();
    let bytes = std::fs::read(path).unwrap();
    let started = Instant::now();
    let native = imgsvc_core::process(&bytes, &Policy::default());
    let native_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let wasm = sandbox.process(&bytes, &Policy::default());
    let wasm_ms = started.elapsed().as_secs_f64() * 1e3;
    match (native, wasm) {
        (Ok(n), Ok(w)) => {
            let mut differs = Vec::new();
            if n.source != w.source {
                differs.push(format!("source facts {:?} vs {:?}", n.source, w.source));
            }
            for (what, a, b) in [
                ("display", &n.display, &w.display),
                ("thumbnail", &n.thumbnail, &w.thumbnail),
            ] {
                if a != b {
                    differs.push(format!(
                        "{what} ({}x{}, {} B vs {}x{}, {} B)",
                        a.width,
                        a.height,
                        a.data.len(),
                        b.width,
                        b.height,
                        b.data.len()
                    ));
                }
            }
            if n.thumbhash != w.thumbhash {
                differs.push("thumbhash".into());
            }
            if differs.is_empty() {
                format!("ok {name}: native {native_ms:.0} ms, wasmtime {wasm_ms:.0} ms")
            } else {
                format!("MISMATCH {name}: {}", differs.join("; "))
            }
        }
        (Err(n), Err(SandboxError::Refused { code, message }))
            if n.code() == code && n.to_string() == message =>
        {
            format!("ok {name}: both refused ({code})")
        }
        (n, w) => format!(
            "MISMATCH {name}: native {:?} vs wasmtime {:?}",
            n.map(|_| "ok"),
            w.map(|_| "ok")
        ),
    }
}

#[test]
fn refusals_carry_the_cores_codes() {
    let sandbox = Sandbox::new(guest()).unwrap();
    let err = sandbox.process(b"", &Policy::default()).unwrap_err();
    assert_eq!(err.code(), "empty_input");
    let err = sandbox
        .process(b"%PDF-1.7 ...", &Policy::default())
        .unwrap_err();
    assert_eq!(err.code(), "unsupported_format");
    let tight = Policy {
        max_input_bytes: 10,
        ..Policy::default()
    };
    let photo = std::fs::read(repo_root().join("../shared/corpus/mate_FreshFlower.jpg")).unwrap();
    assert_eq!(
        sandbox.process(&photo, &tight).unwrap_err().code(),
        "too_large"
    );
    // The guest tightens again: a looser policy is the default policy.
    let loose = Policy {
        max_input_bytes: u64::MAX,
        ..Policy::default()
    };
    let big = vec![0xFF; 11 << 20];
    assert_eq!(
        sandbox.process(&big, &loose).unwrap_err().code(),
        "too_large"
    );
}

#[test]
fn limits_end_a_call_with_an_error_not_a_crash() {
    let photo = std::fs::read(repo_root().join("../shared/corpus/mate_FreshFlower.jpg")).unwrap();
    let starved = Sandbox::with_limits(
        guest(),
        Limits {
            max_memory_bytes: 4 << 20,
            ..Limits::default()
        },
    )
    .unwrap();
    let err = starved.process(&photo, &Policy::default()).unwrap_err();
    assert_eq!(
        err,
        SandboxError::MemoryLimit {
            limit_bytes: 4 << 20
        }
    );
    assert_eq!(err.code(), "memory_limit");
    // Enough to start, not enough for a 13 Mpx photo's 40 MB of pixels: the decode's
    // allocation failure (an abort, i.e. a trap, in the guest) is the memory cap too.
    let cramped = Sandbox::with_limits(
        guest(),
        Limits {
            max_memory_bytes: 24 << 20,
            ..Limits::default()
        },
    )
    .unwrap();
    let dragonfly =
        std::fs::read(repo_root().join("../shared/corpus/exif6_lomiri16_Dragonfly.jpg")).unwrap();
    let err = cramped.process(&dragonfly, &Policy::default()).unwrap_err();
    assert_eq!(err.code(), "memory_limit", "{err:?}");
    // A deadline far shorter than the decode: interrupted, typed, and no worse for wear.
    let hurried = Sandbox::with_limits(
        guest(),
        Limits {
            timeout: Some(std::time::Duration::from_millis(1)),
            ..Limits::default()
        },
    )
    .unwrap();
    let err = hurried.process(&photo, &Policy::default()).unwrap_err();
    assert_eq!(
        err,
        SandboxError::Timeout {
            after: std::time::Duration::from_millis(1)
        }
    );
    assert_eq!(err.code(), "processing_timeout");
    // A generous deadline changes nothing about the output.
    let patient = Sandbox::with_limits(
        guest(),
        Limits {
            timeout: Some(std::time::Duration::from_secs(300)),
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(
        patient.process(&photo, &Policy::default()).unwrap(),
        imgsvc_core::process(&photo, &Policy::default()).unwrap()
    );
    let fuelless = Sandbox::with_limits(
        guest(),
        Limits {
            fuel: Some(1_000_000),
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(
        fuelless.process(&photo, &Policy::default()).unwrap_err(),
        SandboxError::OutOfFuel
    );
    // The same sandbox keeps working after a failed call.
    let sandbox = Sandbox::new(guest()).unwrap();
    let first = sandbox.process(&photo, &Policy::default()).unwrap();
    assert_eq!(sandbox.process(&photo, &Policy::default()).unwrap(), first);
}

#[test]
fn modules_importing_anything_else_are_refused() {
    // (module (import "env" "open" (func)) (memory (export "memory") 1) (func (export "_start")))
    let module: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
        0x02, 0x0c, 0x01, 0x03, b'e', b'n', b'v', 0x04, b'o', b'p', b'e', b'n', 0x00,
        0x00, // import env.open
        0x03, 0x02, 0x01, 0x00, // function section
        0x05, 0x03, 0x01, 0x00, 0x01, // memory section
        0x07, 0x13, 0x02, 0x06, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00, 0x06, b'_', b's',
        b't', b'a', b'r', b't', 0x00, 0x01, // exports
        0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code
    ];
    let err = Sandbox::new(module).err().unwrap();
    assert!(
        matches!(&err, SandboxError::Link(m) if m.contains("env::open")),
        "{err:?}"
    );
}

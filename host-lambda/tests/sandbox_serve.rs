//! `IMGSVC_SANDBOX=wasm` end to end: the real `imgsvc serve` and `imgsvc process` decoding in
//! the wasmtime sandbox give the native bytes, bombs meet the memory cap or the deadline as
//! typed errors while the server keeps serving, and unusable settings refuse to start.
//!
//! The guest module is built by this test (`cargo build -p imgsvc-sandbox-guest --target
//! wasm32-wasip1`, in the same target dir, as `host-sandbox/tests` do) unless
//! `IMGSVC_SANDBOX_GUEST` names a prebuilt `.wasm`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::served::{BIN, Served, serve_command};
use imgsvc_testkit::forge;
use imgsvc_testkit::hostile as corpus;
use imgsvc_testkit::photos::photo_path as photo;
use serde_json::Value;

/// The guest module, built once per test process.
fn guest() -> &'static Path {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST.get_or_init(|| {
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
        imgsvc_sandbox::guest_module_path(target_dir).unwrap()
    })
}

/// The user every upload here is made as.
const USER: &str = "sandboxed";

fn serve(env: &[(&str, &std::ffi::OsStr)]) -> Served {
    Served::start(env)
}

fn wasm(extra: &[(&'static str, &'static str)]) -> Served {
    let mut env: Vec<(&str, &std::ffi::OsStr)> = vec![
        ("IMGSVC_SANDBOX", "wasm".as_ref()),
        ("IMGSVC_SANDBOX_MODULE", guest().as_os_str()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.as_ref())));
    serve(&env)
}

async fn upload(served: &Served, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
    );
    let response = reqwest::Client::new()
        .post(format!("{}/images", served.url))
        .bearer_auth(served.token(USER))
        .multipart(form)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn fetch(url: &str) -> Vec<u8> {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.bytes().await.unwrap().to_vec()
}

fn objects(served: &Served) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .map(|e| e.unwrap().path())
                .map(|p| if p.is_dir() { count(&p) } else { 1 })
                .sum()
        })
    }
    count(&served.data.path().join("objects"))
}

#[tokio::test]
async fn uploads_in_the_sandbox_store_the_native_bytes() {
    let native = serve(&[]);
    let sandboxed = wasm(&[]);
    for name in [
        "exif6_lomiri16_Dragonfly.jpg",
        "mate_Arc-Colors-Transparent_alpha.png",
        "hugin_CA_fringes01_anim.gif",
        "webp_Path.webp",
    ] {
        let bytes = std::fs::read(photo(name)).unwrap();
        let (n_status, n) = upload(&native, name, bytes.clone()).await;
        let (w_status, w) = upload(&sandboxed, name, bytes).await;
        assert_eq!((n_status, w_status), (201, 201), "{name}: {n} / {w}");
        for field in [
            "width",
            "height",
            "thumbnailWidth",
            "thumbnailHeight",
            "thumbhash",
            "imageEtag",
            "thumbnailEtag",
            "mimeType",
            "sizeBytes",
        ] {
            assert_eq!(n[field], w[field], "{name}: {field}");
        }
        for url in ["imageUrl", "thumbnailUrl"] {
            let (a, b) = (
                fetch(n[url].as_str().unwrap()).await,
                fetch(w[url].as_str().unwrap()).await,
            );
            assert!(
                a == b,
                "{name}: {url} differs ({} vs {} bytes)",
                a.len(),
                b.len()
            );
        }
    }
    // Refusals too: same status, code and members.
    for (name, bytes) in [
        ("page.jpg", b"<!DOCTYPE html><html></html>".to_vec()),
        ("photo.bmp", b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0".to_vec()),
        ("empty.png", Vec::new()),
        (
            "cut.jpg",
            std::fs::read(photo("mate_FreshFlower.jpg")).unwrap()[..5_000].to_vec(),
        ),
    ] {
        let (n_status, n) = upload(&native, name, bytes.clone()).await;
        let (w_status, w) = upload(&sandboxed, name, bytes).await;
        assert_eq!(n_status, w_status, "{name}");
        assert!(n_status >= 400, "{name}: {n}");
        assert_eq!(n["code"], w["code"], "{name}");
        assert_eq!(n["detail"], w["detail"], "{name}");
        assert_eq!(n["detectedFormat"], w["detectedFormat"], "{name}");
    }
}

/// An 8000 × 8000 RGBA PNG of zeros in 250 KB: within every policy limit (64 Mpx), so the
/// core decodes it — 256 MB of pixels, and seconds of work in the sandbox.
fn pixel_bomb() -> Vec<u8> {
    forge::png_with(
        8_000,
        8_000,
        6,
        &[],
        &corpus::zlib_zeros((1 + 8_000 * 4) * 8_000),
    )
}

#[tokio::test]
async fn bombs_meet_the_memory_cap_and_the_deadline_and_the_server_keeps_serving() {
    let cramped = wasm(&[("IMGSVC_SANDBOX_MEMORY_MB", "128")]);
    let (status, body) = upload(&cramped, "bomb.png", pixel_bomb()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "memory_limit", "{body}");
    assert_eq!(objects(&cramped), 0);
    // The same server, the next upload: fine.
    let photo_bytes = std::fs::read(photo("mate_FreshFlower.jpg")).unwrap();
    let (status, body) = upload(&cramped, "flower.jpg", photo_bytes).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(objects(&cramped), 2);

    let hurried = wasm(&[("IMGSVC_SANDBOX_TIMEOUT_MS", "100")]);
    let (status, body) = upload(&hurried, "bomb.png", pixel_bomb()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "processing_timeout", "{body}");
    assert_eq!(objects(&hurried), 0);
    let health = reqwest::get(format!("{}/health", hurried.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let (status, body) = upload(&hurried, "page.png", b"<html></html>".to_vec()).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("not_an_image")));
}

#[test]
fn unusable_sandbox_settings_refuse_to_start() {
    let scratch = tempfile::tempdir().unwrap();
    let garbage = scratch.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm but not really").unwrap();
    let garbage = garbage.to_str().unwrap().to_owned();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("IMGSVC_SANDBOX", "wasmtime")], "IMGSVC_SANDBOX"),
        (vec![("IMGSVC_SANDBOX", "wasm")], "IMGSVC_SANDBOX_MODULE"),
        (
            vec![
                ("IMGSVC_SANDBOX", "wasm"),
                ("IMGSVC_SANDBOX_MODULE", "/nonexistent/guest.wasm"),
            ],
            "/nonexistent/guest.wasm",
        ),
        (
            vec![
                ("IMGSVC_SANDBOX", "wasm"),
                ("IMGSVC_SANDBOX_MODULE", &garbage),
            ],
            "unusable",
        ),
        (
            vec![("IMGSVC_SANDBOX_TIMEOUT_MS", "soon")],
            "IMGSVC_SANDBOX_TIMEOUT_MS",
        ),
        (
            vec![("IMGSVC_SANDBOX_MEMORY_MB", "8192")],
            "IMGSVC_SANDBOX_MEMORY_MB",
        ),
    ];
    for (env, mention) in cases {
        let data = scratch.path().join("data");
        let mut command = serve_command(&data);
        for (key, value) in &env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{env:?} started");
        assert!(stderr.contains(mention), "{env:?}: {stderr}");
        // Refused before touching the data dir.
        assert!(!data.exists(), "{env:?} created the data dir");

        let mut process = Command::new(BIN);
        process
            .args(["process", "--out"])
            .arg(scratch.path().join("out"))
            .arg(photo("mate_FreshFlower.jpg"))
            .env_remove("IMGSVC_SANDBOX")
            .env_remove("IMGSVC_SANDBOX_MODULE");
        for (key, value) in &env {
            process.env(key, value);
        }
        let output = process.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{env:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(mention),
            "{env:?}"
        );
    }
}

#[test]
fn imgsvc_process_in_the_sandbox_writes_the_native_files() {
    let out = tempfile::tempdir().unwrap();
    let inputs = [photo("lxqt_flowers.png"), photo("exif3_mate_Storm.jpg")];
    let mut lines = Vec::new();
    for (dir, sandbox) in [("native", None), ("wasm", Some(guest()))] {
        let mut command = Command::new(BIN);
        command
            .args(["process", "--out"])
            .arg(out.path().join(dir))
            .args(&inputs)
            .env_remove("IMGSVC_SANDBOX")
            .env_remove("IMGSVC_SANDBOX_MODULE");
        if let Some(module) = sandbox {
            command
                .args(["--sandbox", "wasm", "--sandbox-module"])
                .arg(module);
        }
        let output = command.output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{dir}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let parsed: Vec<Value> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines.push(parsed);
    }
    for (n, w) in lines[0].iter().zip(&lines[1]) {
        assert_eq!(n["source"], w["source"]);
        assert_eq!(n["thumbhash"], w["thumbhash"]);
    }
    for stem in ["lxqt_flowers", "exif3_mate_Storm"] {
        for file in [format!("{stem}.webp"), format!("{stem}.thumb.webp")] {
            let a = std::fs::read(out.path().join("native").join(&file)).unwrap();
            let b = std::fs::read(out.path().join("wasm").join(&file)).unwrap();
            assert!(a == b, "{file} differs");
        }
    }
}

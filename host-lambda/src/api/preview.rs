//! The browser preview page at `/`: the built `imgsvc-wasm` npm package (host-wasm/dist,
//! made by `host-wasm/build.sh`), served as static files. It previews an upload with the
//! core in WebAssembly, byte-identical to what this server will store, then uploads it.
//!
//! The directory is `IMGSVC_PREVIEW_DIR` (`--preview-dir`), else `host-wasm/dist` in the
//! source tree this binary was built from (`default_preview_dir`). When the package isn't
//! built, `/` says how to build it.

use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

/// The built package in the source tree this binary was built from.
pub fn default_preview_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host-wasm/dist")
}

/// `GET /`: the page, or how to build it.
pub async fn get_preview_page(State(state): State<AppState>) -> Response {
    let preview_dir = &state.http.preview_dir;
    match tokio::fs::read(preview_dir.join("index.html")).await {
        Ok(page) => file_response("index.html", page),
        Err(_) => (
            StatusCode::NOT_FOUND,
            Html(format!(
                "<!doctype html><meta charset=\"utf-8\"><title>imgsvc preview not built</title>\
                 <h1>The preview page is not built</h1>\
                 <p>This server serves the <code>imgsvc-wasm</code> package's preview page from \
                 <code>{}</code>, which has no <code>index.html</code>.</p>\
                 <p>Build it with <code>host-wasm/build.sh</code> (see \
                 <code>docs/browser-package.md</code>), or point <code>IMGSVC_PREVIEW_DIR</code> \
                 at a built package, then reload. The API itself works without it.</p>",
                html_escape(&preview_dir.display().to_string())
            )),
        )
            .into_response(),
    }
}

/// `GET /{file}`: one file of the package (plain names only: no directories, no dotfiles).
pub async fn get_preview_asset(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Response {
    preview_file(&state.http.preview_dir, file).await
}

/// The package's file `file` under `dir`, or a 404.
async fn preview_file(dir: &std::path::Path, file: String) -> Response {
    let plain = !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such file: /{file}"),
        )
        .into_response()
    };
    if content_type(&file).is_none() {
        // Not a package file type (every API path): the router's own bare 404, as if this
        // route weren't here, so "is it routed?" checks still see unrouted API paths.
        return StatusCode::NOT_FOUND.into_response();
    }
    if !plain {
        return not_found();
    }
    match tokio::fs::read(dir.join(&file)).await {
        Ok(bytes) => file_response(&file, bytes),
        Err(_) => not_found(),
    }
}

fn file_response(name: &str, bytes: Vec<u8>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                content_type(name).unwrap_or("application/octet-stream"),
            ),
            // Not content-hashed names: always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response()
}

/// The package's file types; anything else is not served.
fn content_type(name: &str) -> Option<&'static str> {
    let extension = name.rsplit_once('.').map(|(_, e)| e)?;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "ts" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        _ => return None,
    })
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_plain_package_files_are_served() {
        for bad in [
            "..",
            ".env",
            "a/b.js",
            "..%2Fsecret.js",
            "secret",
            "x.sqlite",
        ] {
            let response = preview_file(&default_preview_dir(), bad.to_owned()).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{bad}");
        }
        let unrouted = preview_file(&default_preview_dir(), "metricz".to_owned()).await;
        assert_eq!(unrouted.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(unrouted.into_body(), 1024)
            .await
            .unwrap();
        assert!(
            body.is_empty(),
            "extension-less paths get the router's bare 404"
        );
        assert_eq!(
            content_type("imgsvc_wasm_bg.wasm"),
            Some("application/wasm")
        );
        assert_eq!(
            content_type("index.d.ts"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(html_escape("<a&b>"), "&lt;a&amp;b&gt;");
    }
}

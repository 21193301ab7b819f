//! `imgsvc serve` as a process: configuration read from the environment reaches the app.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A running `imgsvc serve` on an ephemeral port; killed on drop.
struct Served {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(env: &[(&str, &std::ffi::OsStr)]) -> Served {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgsvc"));
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env_remove("IMGSVC_S3_BUCKET")
        .env_remove("IMGSVC_DYNAMODB_TABLE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Served {
        child,
        url,
        _data: data,
    }
}

fn rs256(issuer: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".into());
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture("test-rsa-private.pem")).unwrap())
        .unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"sub": "carol", "exp": exp, "iss": issuer});
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn identity_provider_tokens_are_accepted_when_its_jwks_is_configured() {
    let jwks = fixture("test-jwks.json");
    let served = serve(&[
        ("IMGSVC_JWKS_FILE", jwks.as_os_str()),
        ("IMGSVC_JWT_ISSUER", "https://idp.example".as_ref()),
    ]);
    let client = reqwest::Client::new();
    let list = |token: String| {
        client
            .get(format!("{}/images", served.url))
            .bearer_auth(token)
            .send()
    };
    let accepted = list(rs256("https://idp.example")).await.unwrap();
    assert_eq!(accepted.status(), reqwest::StatusCode::OK);
    let refused = list(rs256("https://elsewhere.example")).await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    // Without the JWKS the same token is refused.
    let plain = serve(&[]);
    let refused = client
        .get(format!("{}/images", plain.url))
        .bearer_auth(rs256("https://idp.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
}

#[test]
fn an_unusable_jwks_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    for jwks in [
        "not json",
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}"#,
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_imgsvc"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env("IMGSVC_JWKS", jwks)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{jwks}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("IMGSVC_JWKS"), "{stderr}");
    }
}

//! `imgsvc serve` as a process: configuration read from the environment reaches the app.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

mod common;
use common::fresh_database;
use common::served::{BIN, Served};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn serve(env: &[(&str, &std::ffi::OsStr)]) -> Served {
    Served::start(env)
}

/// `serve` with at most `limit` open files (`ulimit -n`), as on a small host.
fn serve_with_file_limit(limit: u32, env: &[(&str, &std::ffi::OsStr)]) -> Served {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(BIN);
    Served::spawn(tempfile::tempdir().unwrap(), command, env)
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
        let output = Command::new(BIN)
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

// --- The connection edge (issue 17 item 2): timeouts and a connection cap. ---

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Read until the server closes the connection (what it sent, if anything); `None` if it
/// is still open after `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => break,
        }
    }
    Some(String::from_utf8_lossy(&received).into_owned())
}

#[test]
fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let served = serve(&[("IMGSVC_HEADER_TIMEOUT_MS", "1000".as_ref())]);
    // Headers trickled and never finished (slowloris), and a connection that sends nothing.
    let mut slowloris = TcpStream::connect(served.address()).unwrap();
    slowloris
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut idle = TcpStream::connect(served.address()).unwrap();
    assert!(
        closed_within(&mut slowloris, Duration::from_secs(5)).is_some(),
        "a connection trickling its headers is still open"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).is_some(),
        "an idle connection is still open"
    );
    // A kept-alive connection that goes quiet after a request is closed too.
    let mut kept = TcpStream::connect(served.address()).unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answered = closed_within(&mut kept, Duration::from_secs(5))
        .expect("a kept-alive connection is still open");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
}

/// A multipart upload request's head and the start of its body, announcing `total` bytes.
fn upload_head(token: &str, total: usize) -> Vec<u8> {
    let mut request = format!(
        "POST /images HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {total}\r\n\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(&[0xFF, 0xD8, 0xFF]);
    request
}

#[test]
fn a_stalled_or_trickled_upload_body_is_dropped() {
    let served = serve(&[
        ("IMGSVC_BODY_IDLE_TIMEOUT_MS", "1000".as_ref()),
        ("IMGSVC_BODY_TIMEOUT_MS", "3000".as_ref()),
    ]);
    let token = served.token("sam");
    // 2 MiB of a 9 MiB upload, then nothing: refused (408) and the connection closed, so
    // what was buffered is freed.
    let mut stalled = TcpStream::connect(served.address()).unwrap();
    stalled.write_all(&upload_head(&token, 9 << 20)).unwrap();
    stalled.write_all(&vec![0u8; 2 << 20]).unwrap();
    let answer = closed_within(&mut stalled, Duration::from_secs(5))
        .expect("a stalled upload is still open");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");

    // One byte every 300 ms never stalls for a second, but passes the body deadline.
    let mut trickled = TcpStream::connect(served.address()).unwrap();
    trickled.write_all(&upload_head(&token, 1 << 20)).unwrap();
    let mut answer = None;
    for _ in 0..20 {
        if trickled.write_all(b"x").is_err() {
            break;
        }
        // Stop trickling once the server answers (or hangs up).
        answer = closed_within(&mut trickled, Duration::from_millis(300));
        if answer.is_some() {
            break;
        }
    }
    let answer = answer.expect("a trickled upload is still open");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn a_request_is_served_while_more_idle_connections_than_file_descriptors_are_held() {
    let served = serve_with_file_limit(
        64,
        &[
            ("IMGSVC_HEADER_TIMEOUT_MS", "1000".as_ref()),
            ("IMGSVC_MAX_CONNECTIONS", "16".as_ref()),
        ],
    );
    let held: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(served.address()).unwrap())
        .collect();
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!("{}/health", served.url))
        .send()
        .await
        .expect("/health did not answer while idle connections were held");
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    drop(held);
}

// --- Store calls have deadlines (issue 17 item 3). ---

/// A TCP black hole: accepts connections and never answers.
fn black_hole() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn a_hung_store_fails_health_and_uploads_in_bounded_time() {
    let hole = black_hole();
    let served = serve(&[
        ("IMGSVC_S3_BUCKET", "bucket".as_ref()),
        ("IMGSVC_DYNAMODB_TABLE", "table".as_ref()),
        ("IMGSVC_S3_FORCE_PATH_STYLE", "true".as_ref()),
        ("AWS_ENDPOINT_URL", hole.as_ref()),
        ("AWS_REGION", "us-east-1".as_ref()),
        ("AWS_ACCESS_KEY_ID", "test".as_ref()),
        ("AWS_SECRET_ACCESS_KEY", "test".as_ref()),
        ("AWS_EC2_METADATA_DISABLED", "true".as_ref()),
        ("IMGSVC_AWS_ATTEMPT_TIMEOUT_MS", "500".as_ref()),
        ("IMGSVC_AWS_OPERATION_TIMEOUT_MS", "1500".as_ref()),
        ("IMGSVC_HEALTH_TIMEOUT_MS", "1000".as_ref()),
    ]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let health = client
        .get(format!("{}/health", served.url))
        .send()
        .await
        .expect("/health did not answer with the stores hung");
    assert_eq!(health.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["blobStore"], "timeout", "{body}");
    assert_eq!(body["metadataStore"], "timeout", "{body}");

    let photo = imgsvc_testkit::photos::read_corpus("skimage_rocket.jpg");
    let upload = client
        .post(format!("{}/images", served.url))
        .bearer_auth(served.token("sam"))
        .header("idempotency-key", "hung-1")
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(photo).file_name("a.jpg"),
        ))
        .send()
        .await
        .expect("POST /images did not answer with the stores hung");
    assert_eq!(upload.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
}

// --- Bursts (issue 17 item 16): uploads in flight are bounded. ---

#[tokio::test]
async fn uploads_past_the_in_flight_bound_get_503_before_their_body_is_read() {
    let served = serve(&[("IMGSVC_MAX_INFLIGHT_UPLOADS", "2".as_ref())]);
    let token = served.token("sam");
    // Two uploads in flight, their bodies still arriving.
    let mut in_flight: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(served.address()).unwrap();
            stream.write_all(&upload_head(&token, 9 << 20)).unwrap();
            stream.write_all(&vec![0u8; 1 << 20]).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // A third is refused on its head alone: no byte of its body was sent.
    let mut third = TcpStream::connect(served.address()).unwrap();
    third.write_all(&upload_head(&token, 9 << 20)).unwrap();
    let answer = closed_within(&mut third, Duration::from_secs(5))
        .expect("an upload past the bound waits for its body");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: "),
        "{answer}"
    );
    assert!(answer.contains("\"code\":\"busy\""), "{answer}");
    // Once those finish (here: their clients give up), uploads are taken again.
    for stream in &mut in_flight {
        stream.shutdown(std::net::Shutdown::Both).unwrap();
    }
    let photo = imgsvc_testkit::photos::read_corpus("skimage_rocket.jpg");
    let client = reqwest::Client::new();
    let mut status = None;
    for _ in 0..20 {
        let response = client
            .post(format!("{}/images", served.url))
            .bearer_auth(&token)
            .multipart(reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(photo.clone()).file_name("a.jpg"),
            ))
            .send()
            .await
            .unwrap();
        status = Some(response.status());
        if response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, Some(reqwest::StatusCode::CREATED));
}

// --- Staged originals are swept (issue 17 item 6). ---

#[test]
fn expired_staged_originals_are_swept_at_start() {
    let data = tempfile::tempdir().unwrap();
    let staging = data.path().join("objects/uploads/uma");
    std::fs::create_dir_all(&staging).unwrap();
    // An upload minted two hours ago (its id is a ULID) and one minted now.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let stale = staging.join(ulid::Ulid::from_parts(now_ms - 2 * 3600 * 1000, 1).to_string());
    let fresh = staging.join(ulid::Ulid::from_parts(now_ms, 1).to_string());
    std::fs::write(&stale, b"stale").unwrap();
    std::fs::write(&fresh, b"fresh").unwrap();
    let _served = Served::spawn(data, Command::new(BIN), &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stale.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!stale.exists(), "an expired staged original was kept");
    assert!(fresh.exists(), "a live staged original was removed");
}

// --- Orphan objects are swept (issue 17 item 5). ---

/// Backdate a file's modification time by `age`.
fn age_file(path: &std::path::Path, age: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

#[tokio::test]
async fn objects_without_a_record_are_swept_at_start() {
    let mut served = serve(&[]);
    let photo = imgsvc_testkit::photos::read_corpus("skimage_rocket.jpg");
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/images", served.url))
        .bearer_auth(served.token("vera"))
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(photo).file_name("a.jpg"),
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Stop it (as kill -9 would) and keep its data directory.
    let data = std::mem::replace(&mut served.data, tempfile::tempdir().unwrap());
    drop(served);
    let objects = data.path().join("objects");
    let live = [
        objects.join(created["s3Key"].as_str().unwrap()),
        objects.join(created["thumbnailKey"].as_str().unwrap()),
    ];
    // What a killed upload leaves: both objects, no record. One two hours old, one just
    // written (its record may still be on its way).
    let orphans = [
        objects.join("images/vera/01ORPHAN0000000000000000AA.webp"),
        objects.join("images/vera/thumbnails/01ORPHAN0000000000000000AA.webp"),
    ];
    let recent = objects.join("images/vera/01RECENT0000000000000000AA.webp");
    for path in orphans.iter().chain([&recent]) {
        std::fs::write(path, b"webp").unwrap();
    }
    for path in orphans.iter().chain(&live) {
        age_file(path, Duration::from_secs(2 * 3600));
    }
    let _served = Served::spawn(data, Command::new(BIN), &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while orphans.iter().any(|p| p.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for path in &orphans {
        assert!(!path.exists(), "orphan {} was kept", path.display());
    }
    for path in live.iter().chain([&recent]) {
        assert!(path.exists(), "{} was removed", path.display());
    }
}

#[tokio::test]
async fn migrate_verify_fails_in_bounded_time_on_a_hung_dynamodb() {
    let hole = black_hole();
    let database = fresh_database().await;
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["migrate", "--data-dir"])
        .arg(data.path())
        .arg("verify")
        .env("IMGSVC_LEGACY_DATABASE_URL", &database)
        .env("IMGSVC_S3_BUCKET", "bucket")
        .env("IMGSVC_DYNAMODB_TABLE", "table")
        .env("AWS_ENDPOINT_URL", &hole)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("IMGSVC_AWS_ATTEMPT_TIMEOUT_MS", "500")
        .env("IMGSVC_AWS_OPERATION_TIMEOUT_MS", "1500")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = status.expect("migrate verify still running after 20 s on a hung DynamoDB");
    // 2: could not run.
    assert_eq!(status.code(), Some(2));
}

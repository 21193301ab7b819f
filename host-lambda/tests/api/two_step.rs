//! The two-step upload (`POST /uploads`, PUT, complete) and the sweeps of what uploads leave.

use crate::common::aws::aws_endpoint;
use crate::harness::{Backend, Server, on_both_backends, problem, small_jpeg};
use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn two_step_upload_urls_are_signed_bounded_and_single_use(backend: Backend) {
    let server = Server::start(backend).await;
    let jpeg = small_jpeg();
    let create = |size: usize, content_type: &str| {
        server
            .client
            .post(format!("{}/uploads", server.url))
            .bearer_auth(server.token("judy"))
            .json(&json!({"sizeBytes": size, "contentType": content_type}))
            .send()
    };
    // Declarations are checked up front: too large, not an image type, malformed.
    problem(
        create(10 * 1024 * 1024 + 1, "image/jpeg").await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    problem(
        create(100, "text/html").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "not_an_image",
    )
    .await;
    problem(
        create(0, "image/png").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "empty_input",
    )
    .await;
    let malformed = server
        .client
        .post(format!("{}/uploads", server.url))
        .bearer_auth(server.token("judy"))
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(malformed, StatusCode::BAD_REQUEST, "invalid_body").await;

    let upload: Value = create(jpeg.len(), "Image/JPEG")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = upload["uploadUrl"].as_str().unwrap().to_owned();
    let id = upload["uploadId"].as_str().unwrap().to_owned();
    assert_eq!(upload["maxBytes"], 10 * 1024 * 1024);
    assert_eq!(upload["headers"]["Content-Type"], "image/jpeg");
    assert_eq!(upload["headers"]["Content-Length"], jpeg.len().to_string());
    let put = |url: String, content_type: &'static str, body: Vec<u8>| {
        server
            .client
            .put(url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    match backend {
        Backend::Embedded => {
            // This server's own URL: a tampered one (another key, another size, a bad
            // signature), another Content-Type or a body of another size is refused.
            let size = format!("size={}", jpeg.len());
            for tampered in [
                url.replace("uploads/judy/", "uploads/mallory/"),
                url.replace(&size, "size=10485760"),
                format!("{}x", &url[..url.len() - 1]),
            ] {
                let response = put(tampered, "image/jpeg", jpeg.clone()).await.unwrap();
                problem(response, StatusCode::FORBIDDEN, "invalid_signature").await;
            }
            problem(
                put(url.clone(), "text/html", jpeg.clone()).await.unwrap(),
                StatusCode::FORBIDDEN,
                "invalid_signature",
            )
            .await;
            let mut longer = jpeg.clone();
            longer.push(0);
            problem(
                put(url.clone(), "image/jpeg", longer).await.unwrap(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
            )
            .await;
            problem(
                put(url.clone(), "image/jpeg", jpeg[..100].to_vec())
                    .await
                    .unwrap(),
                StatusCode::BAD_REQUEST,
                "size_mismatch",
            )
            .await;
            // An expired one too, even correctly signed.
            let expired = imgsvc_lambda::store::StagedPut {
                key: format!("uploads/judy/{id}"),
                size_bytes: 10,
                content_type: "image/jpeg".into(),
                expires_at: time::OffsetDateTime::now_utc().unix_timestamp() - 1,
            };
            let signature = server.state.app.url_signer.sign(&expired);
            let expired = format!(
                "{}/staging/{}?expires={}&size=10&sig={signature}",
                server.url, expired.key, expired.expires_at
            );
            problem(
                put(expired, "image/jpeg", vec![1u8; 10]).await.unwrap(),
                StatusCode::FORBIDDEN,
                "invalid_signature",
            )
            .await;
        }
        Backend::Aws => {
            // A presigned S3 PUT, straight to the bucket, whose signature covers the
            // declared length and type (S3 refuses any other; the emulator doesn't check
            // signatures, so that part is S3's to enforce) and expires in 15 minutes.
            let (_, bucket) = server.s3.as_ref().unwrap();
            assert!(
                url.starts_with(&format!("{}/{bucket}/uploads/judy/{id}?", aws_endpoint())),
                "{url}"
            );
            assert!(url.contains("X-Amz-Signature="), "{url}");
            assert!(url.contains("X-Amz-Expires=900"), "{url}");
            let signed = url
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
                .unwrap();
            assert_eq!(signed, "content-length%3Bcontent-type%3Bhost");
        }
    }

    // Completing before the PUT, or someone else's upload, finds nothing.
    let complete = |user: &str, id: &str| {
        server
            .client
            .post(format!("{}/uploads/{id}/complete", server.url))
            .bearer_auth(server.token(user))
            .send()
    };
    problem(
        complete("judy", &id).await.unwrap(),
        StatusCode::NOT_FOUND,
        "upload_not_found",
    )
    .await;
    assert!(
        put(url.clone(), "image/jpeg", jpeg.clone())
            .await
            .unwrap()
            .status()
            .is_success()
    );
    problem(
        complete("mallory", &id).await.unwrap(),
        StatusCode::NOT_FOUND,
        "upload_not_found",
    )
    .await;

    // Complete, then a retry replays the same record; the staged original is gone.
    let first = complete("judy", &id).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = complete("judy", &id).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let objects = server.objects().await;
    assert!(
        objects.iter().all(|key| !key.starts_with("uploads/")),
        "{objects:?}"
    );
    assert_eq!(objects.len(), 2);
}

/// A two-step upload ends: its URL takes one PUT, and once its URL has expired (plus a
/// grace period) it can't be completed and its original is removed.
async fn staged_uploads_are_single_use_and_end(backend: Backend) {
    let server = Server::start(backend).await;
    let jpeg = small_jpeg();
    let complete = |id: String| {
        server
            .client
            .post(format!("{}/uploads/{id}/complete", server.url))
            .bearer_auth(server.token("kim"))
            .send()
    };
    // Minted two hours ago (an upload id is the ULID `POST /uploads` made), its original
    // PUT before the URL expired, never completed.
    let two_hours_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 2 * 3600 * 1000;
    let stale = ulid::Ulid::from_parts(two_hours_ago, 42).to_string();
    server
        .state
        .app
        .blobs
        .put(
            &format!("uploads/kim/{stale}"),
            Bytes::from(jpeg.clone()),
            "image/jpeg",
            "no-store",
        )
        .await
        .unwrap();
    problem(
        complete(stale).await.unwrap(),
        StatusCode::GONE,
        "upload_expired",
    )
    .await;
    assert!(
        server.objects().await.is_empty(),
        "{:?}",
        server.objects().await
    );

    if let Backend::Embedded = backend {
        // This server's URLs take one PUT: not a second, not one after `complete`.
        let upload: Value = server
            .client
            .post(format!("{}/uploads", server.url))
            .bearer_auth(server.token("kim"))
            .json(&json!({"sizeBytes": jpeg.len(), "contentType": "image/jpeg"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = upload["uploadUrl"].as_str().unwrap().to_owned();
        let id = upload["uploadId"].as_str().unwrap().to_owned();
        let put = || {
            server
                .client
                .put(&url)
                .header("content-type", "image/jpeg")
                .body(jpeg.clone())
                .send()
        };
        assert!(put().await.unwrap().status().is_success());
        problem(put().await.unwrap(), StatusCode::CONFLICT, "upload_used").await;
        assert_eq!(complete(id).await.unwrap().status(), StatusCode::CREATED);
        problem(put().await.unwrap(), StatusCode::CONFLICT, "upload_used").await;
        let objects = server.objects().await;
        assert!(
            objects.iter().all(|key| !key.starts_with("uploads/")),
            "{objects:?}"
        );
    }
}

/// A user can't fill the disk with staged originals: past 20 open (staged, not completed)
/// uploads, `POST /uploads` is refused (429); other users are not affected.
async fn open_staged_uploads_per_user_are_capped(backend: Backend) {
    let server = Server::start(backend).await;
    let create = |user: &'static str| {
        server
            .client
            .post(format!("{}/uploads", server.url))
            .bearer_auth(server.token(user))
            .json(&json!({"sizeBytes": 10, "contentType": "image/jpeg"}))
            .send()
    };
    for _ in 0..20 {
        let upload: Value = create("lena").await.unwrap().json().await.unwrap();
        let staged = server
            .client
            .put(upload["uploadUrl"].as_str().unwrap())
            .header("content-type", "image/jpeg")
            .body(vec![7u8; 10])
            .send()
            .await
            .unwrap();
        assert!(staged.status().is_success(), "{staged:?}");
    }
    problem(
        create("lena").await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_uploads",
    )
    .await;
    assert_eq!(create("otto").await.unwrap().status(), StatusCode::CREATED);
}

/// The sweeps (`serve` at start and periodically, `imgsvc sweep`): image objects no
/// record names, once past the grace period, and expired staged originals, are removed;
/// a record's objects never are.
async fn sweeps_remove_orphans_and_expired_staging_only(backend: Backend) {
    let server = Server::start(backend).await;
    assert_eq!(
        server.upload("wil", small_jpeg(), &[]).await.status(),
        StatusCode::CREATED
    );
    let mut kept = server.objects().await;
    kept.sort();
    let orphans = [
        "images/wil/01ORPHAN0000000000000000AA.webp",
        "images/wil/thumbnails/01ORPHAN0000000000000000AA.webp",
    ];
    // A staged original whose upload was minted an hour ago (its id is that ULID).
    let minted = (time::OffsetDateTime::now_utc().unix_timestamp() as u64 - 3600) * 1000;
    let staged = format!("uploads/wil/{}", ulid::Ulid::from_parts(minted, 7));
    for key in orphans.iter().chain(&[staged.as_str()]) {
        server
            .state
            .app
            .blobs
            .put(key, Bytes::from_static(b"x"), "image/webp", "no-store")
            .await
            .unwrap();
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sweep = |at: i64, delete: bool| {
        imgsvc_lambda::upload::sweep_orphans(
            server.state.app.blobs.as_ref(),
            server.state.app.metadata.as_ref(),
            None,
            at,
            3600,
            delete,
        )
    };
    // Within the grace period nothing is an orphan yet; a dry run removes nothing.
    assert!(sweep(now, true).await.unwrap().is_empty());
    let mut found = sweep(now + 7200, false).await.unwrap();
    found.sort();
    assert_eq!(found, orphans);
    assert_eq!(server.objects().await.len(), kept.len() + 3);
    assert_eq!(sweep(now + 7200, true).await.unwrap().len(), 2);
    // The staged original, once its upload expired (15 min + 15 min grace).
    assert_eq!(
        imgsvc_lambda::upload::sweep_staging(
            server.state.app.blobs.as_ref(),
            i64::try_from(server.state.app.limits.upload_grace.as_secs()).unwrap(),
            now + 7200
        )
        .await
        .unwrap(),
        1
    );
    let mut left = server.objects().await;
    left.sort();
    assert_eq!(left, kept);
}

on_both_backends!(
    two_step_upload_urls_are_signed_bounded_and_single_use,
    staged_uploads_are_single_use_and_end,
    open_staged_uploads_per_user_are_capped,
    sweeps_remove_orphans_and_expired_staging_only,
);

//! The image resource: upload, read, edit, delete, list; the seeds' manual cases through both upload paths.

use crate::harness::{Backend, Server, UploadPath, on_both_backends, problem, raw_get, small_jpeg};
use imgsvc_testkit::photos::read_corpus as corpus;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

async fn upload_get_patch_delete_round_trip(backend: Backend) {
    let server = Server::start(backend).await;
    let photo = corpus("lomiri16_Picture_1A.jpg"); // ~1.2 MB
    let response = server
        .upload(
            "alice",
            photo.clone(),
            &[
                ("title", "Harbour"),
                ("tags", "sea, boats"),
                ("albumId", "trip"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let record: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/images/{}", record["id"].as_str().unwrap())
    );
    assert_eq!(record["userId"], "alice");
    assert_eq!(record["title"], "Harbour");
    assert_eq!(record["tags"], json!(["sea", "boats"]));
    assert_eq!(record["albumId"], "trip");
    assert_eq!(record["mimeType"], "image/jpeg");
    assert_eq!(record["sizeBytes"], photo.len());
    assert_eq!(
        (record["width"].as_u64(), record["height"].as_u64()),
        (Some(1365), Some(1074))
    );
    assert_eq!(record["thumbnailWidth"], 400);
    assert_eq!(record["version"], 1);
    assert_eq!(record["format"], "webp");
    assert_eq!(record["quality"], 85);
    assert_eq!(record["originalFilename"], "photo.jpg");
    let id = record["id"].as_str().unwrap().to_owned();
    assert_eq!(record["s3Key"], format!("images/alice/{id}.webp"));
    assert_eq!(
        record["thumbnailKey"],
        format!("images/alice/thumbnails/{id}.webp")
    );

    // Both objects are stored as WebP with a long immutable cache, and their ETag is the
    // record's. Locally they are served by /files; in AWS the bucket sits behind the CDN
    // (private to anonymous callers), so the test reads them with the SDK.
    for (url, etag, key) in [
        ("imageUrl", "imageEtag", "s3Key"),
        ("thumbnailUrl", "thumbnailEtag", "thumbnailKey"),
    ] {
        let url = record[url].as_str().unwrap();
        let key = record[key].as_str().unwrap();
        assert!(url.ends_with(&format!("/{key}")), "{url}");
        let etag = record[etag].as_str().unwrap();
        if let Some((s3, bucket)) = &server.s3 {
            let object = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            assert_eq!(object.content_type(), Some("image/webp"));
            assert_eq!(object.e_tag(), Some(etag));
            assert!(object.cache_control().unwrap().contains("immutable"));
            continue;
        }
        let file = server.client.get(url).send().await.unwrap();
        assert_eq!(file.status(), StatusCode::OK);
        assert_eq!(file.headers()["content-type"], "image/webp");
        assert_eq!(file.headers()["etag"].to_str().unwrap(), etag);
        assert!(
            file.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        let again = server
            .client
            .get(url)
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }

    let fetched: Value = server.get("alice", &location).await.json().await.unwrap();
    assert_eq!(fetched, record);
    problem(
        server.get("bob", &location).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    problem(
        server.get("alice", "/images/01NOSUCHIMAGE").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // PATCH: version in the body, then in If-Match; stale → 409 with the current version.
    let patch = |body: Value, if_match: Option<&str>, user: &str| {
        let mut request = server
            .client
            .patch(format!("{}{location}", server.url))
            .bearer_auth(server.token(user))
            .json(&body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send()
    };
    let updated: Value = patch(
        json!({"title": "Harbour at dawn", "version": 1}),
        None,
        "alice",
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["title"], "Harbour at dawn");
    assert_eq!(updated["tags"], json!(["sea", "boats"]));
    let response = patch(
        json!({"tags": ["x"], "albumId": null}),
        Some("\"2\""),
        "alice",
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(
        (updated["version"].as_u64(), &updated["tags"]),
        (Some(3), &json!(["x"]))
    );
    assert!(updated.get("albumId").is_none());
    let stale = problem(
        patch(json!({"title": "late", "version": 2}), None, "alice")
            .await
            .unwrap(),
        StatusCode::CONFLICT,
        "version_conflict",
    )
    .await;
    assert_eq!(stale["currentVersion"], 3);
    problem(
        patch(json!({"title": "no version"}), None, "alice")
            .await
            .unwrap(),
        StatusCode::PRECONDITION_REQUIRED,
        "version_required",
    )
    .await;
    problem(
        patch(json!({"owner": "me", "version": 3}), None, "alice")
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_body",
    )
    .await;
    problem(
        patch(json!({"title": "mine now", "version": 3}), None, "bob")
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // DELETE: 204, then 404, and both objects are gone.
    assert_eq!(server.objects().await.len(), 2);
    let delete = |user: &str| {
        server
            .client
            .delete(format!("{}{location}", server.url))
            .bearer_auth(server.token(user))
            .send()
    };
    problem(
        delete("bob").await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        delete("alice").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    problem(
        server.get("alice", &location).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(server.objects().await.is_empty());
}

async fn the_seeds_manual_cases_through_multipart(backend: Backend) {
    the_seeds_manual_cases(backend, UploadPath::Multipart).await;
}

async fn the_seeds_manual_cases_through_the_two_step_upload(backend: Backend) {
    the_seeds_manual_cases(backend, UploadPath::TwoStep).await;
}

async fn the_seeds_manual_cases(backend: Backend, path: UploadPath) {
    let server = Server::start(backend).await;
    let limit = 10 * 1024 * 1024;
    // Exactly 10 MiB (a real JPEG padded after its end marker) succeeds…
    let mut exact = corpus("mate_Elephants_3840x2160.jpg");
    assert!(exact.len() < limit);
    exact.resize(limit, 0);
    assert_eq!(
        server
            .upload_by(path, "alice", exact.clone(), &[])
            .await
            .status(),
        StatusCode::CREATED
    );
    // …one byte more is 413, refused while streaming.
    exact.push(0);
    problem(
        server.upload_by(path, "alice", exact, &[]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    // A much larger body is refused the same way.
    let huge = vec![0u8; 3 * limit];
    problem(
        server.upload_by(path, "alice", huge, &[]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;

    // Not an image → 400; an image format we don't take → 415 naming it; a bomb → 422.
    let html = b"<!DOCTYPE html><html><body>hi</body></html>".to_vec();
    problem(
        server.upload_by(path, "alice", html, &[]).await,
        StatusCode::BAD_REQUEST,
        "not_an_image",
    )
    .await;
    let bmp = b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0".to_vec();
    let body = problem(
        server.upload_by(path, "alice", bmp, &[]).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_format",
    )
    .await;
    assert_eq!(body["detectedFormat"], "bmp");
    let mut bomb = small_jpeg();
    let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    bomb[sof + 5..sof + 9].copy_from_slice(&[0x4E, 0x20, 0x4E, 0x20]); // 20000×20000
    problem(
        server.upload_by(path, "alice", bomb, &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_pixels",
    )
    .await;
    let truncated = small_jpeg()[..5000].to_vec();
    problem(
        server.upload_by(path, "alice", truncated, &[]).await,
        StatusCode::BAD_REQUEST,
        "corrupt_image",
    )
    .await;

    // No token, a bad token → 401 with WWW-Authenticate.
    let anonymous = match path {
        UploadPath::Multipart => server
            .client
            .post(format!("{}/images", server.url))
            .multipart(Form::new().part("file", Part::bytes(small_jpeg()))),
        UploadPath::TwoStep => server.client.post(format!("{}/uploads", server.url)),
    }
    .send()
    .await
    .unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let forged = server
        .client
        .get(format!("{}/images", server.url))
        .bearer_auth("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.bad")
        .send()
        .await
        .unwrap();
    problem(forged, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // A form without a file, and bad fields.
    let no_file = server
        .client
        .post(format!("{}/images", server.url))
        .bearer_auth(server.token("alice"))
        .multipart(Form::new().text("title", "x"))
        .send()
        .await
        .unwrap();
    problem(no_file, StatusCode::BAD_REQUEST, "missing_file").await;
    let long_title = "t".repeat(201);
    problem(
        server
            .upload("alice", small_jpeg(), &[("title", &long_title)])
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_field",
    )
    .await;
    problem(
        server
            .upload("alice", small_jpeg(), &[("albumId", "../etc")])
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_field",
    )
    .await;

    // Only the one good upload left anything behind.
    assert_eq!(server.objects().await.len(), 2);
    let health: Value = server
        .client
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
}

async fn listing_pages_through_45_uploads_newest_first_without_gaps(backend: Backend) {
    let server = Server::start(backend).await;
    let mut uploaded = Vec::new();
    for i in 0..45 {
        let album = if i % 3 == 0 { "threes" } else { "others" };
        let response = server
            .upload("carol", small_jpeg(), &[("albumId", album)])
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let record: Value = response.json().await.unwrap();
        uploaded.push(record["id"].as_str().unwrap().to_owned());
    }
    server.upload("dave", small_jpeg(), &[]).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/images?limit=20&cursor={c}"),
            None => "/images?limit=20".to_owned(),
        };
        let page: Value = server.get("carol", &path).await.json().await.unwrap();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["userId"], "carol");
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    uploaded.reverse(); // newest first
    assert_eq!(seen, uploaded);

    // The album index, and cursors bound to their listing.
    let threes: Value = server
        .get("carol", "/images?albumId=threes&limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(threes["items"].as_array().unwrap().len(), 15);
    let first: Value = server
        .get("carol", "/images?limit=5")
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["nextCursor"].as_str().unwrap();
    problem(
        server
            .get("dave", &format!("/images?cursor={cursor}"))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
    )
    .await;
    problem(
        server
            .get("carol", &format!("/images?albumId=threes&cursor={cursor}"))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
    )
    .await;
    let mut tampered = cursor.to_owned();
    tampered.replace_range(2..3, if &cursor[2..3] == "A" { "B" } else { "A" });
    problem(
        server
            .get("carol", &format!("/images?cursor={tampered}"))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
    )
    .await;
    for bad in ["0", "101", "x"] {
        problem(
            server.get("carol", &format!("/images?limit={bad}")).await,
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        )
        .await;
    }
}

/// Issue 17 item 8: `/files/{key}` with `..`, NUL, a directory or a 5,000-character name
/// answered 503 `store_unavailable` (and logged an ERROR): anyone could raise the 5xx
/// alarm. A key that can't name an object is simply not found.
async fn invalid_file_keys_are_not_found(backend: Backend) {
    let server = Server::start(backend).await;
    // An upload, so that `images/kim/` exists (a directory on the embedded store).
    let created = server.upload("kim", small_jpeg(), &[]).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let long = format!("/files/images/{}", "a".repeat(5_000));
    for path in [
        "/files/images/../secret",
        "/files/images/kim/../../secret",
        "/files/images/a%00b.webp",
        "/files/images/kim",
        "/files/images/kim/",
        "/files/images/kim/thumbnails",
        "/files/images//kim",
        "/files/images/./kim",
        long.as_str(),
    ] {
        let (status, content_type, body) = raw_get(&server.url, path).await;
        let label = &path[..path.len().min(40)];
        assert_eq!(status, 404, "{label}: {body}");
        assert_eq!(content_type, "application/problem+json", "{label}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], "not_found", "{label}");
    }
}

/// Issue 17 item 10: `If-Match: *` matches any current representation (RFC 9110 13.1.1);
/// it was a 400.
async fn if_match_star_matches_the_current_version(backend: Backend) {
    let server = Server::start(backend).await;
    let record: Value = server
        .upload("olga", small_jpeg(), &[])
        .await
        .json()
        .await
        .unwrap();
    let id = record["id"].as_str().unwrap();
    let updated = server
        .client
        .patch(format!("{}/images/{id}", server.url))
        .bearer_auth(server.token("olga"))
        .header("if-match", "*")
        .json(&json!({"title": "any version"}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(
        (updated["title"].as_str(), updated["version"].as_u64()),
        (Some("any version"), Some(2))
    );
    // `*` still needs a current representation: absent → 404, as without it.
    let absent = server
        .client
        .patch(format!("{}/images/01NOSUCHIMAGE", server.url))
        .bearer_auth(server.token("olga"))
        .header("if-match", "*")
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    problem(absent, StatusCode::NOT_FOUND, "not_found").await;
}

/// Issue 19: the system this replaces accepted AVIF and TIFF; so does this, and HEIC (what
/// iPhones save) too. The record keeps the format that was uploaded (`mimeType`, sniffed),
/// the display is WebP as always, and a format still refused gets its 415 naming it.
async fn avif_tiff_and_heic_uploads_keep_their_source_format(backend: Backend) {
    let server = Server::start(backend).await;
    let avif = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/formats/linku_kimono.rotate90.avif"
    ))
    .unwrap();
    let tiff = imgsvc_testkit::forge::encode(
        &image::DynamicImage::ImageRgb8(imgsvc_testkit::forge::gradient(640, 480)),
        image::ImageFormat::Tiff,
    );
    // The AVIF is stored turned a quarter: shown (and so the display) upright, 722×1024.
    for (bytes, mime, size) in [
        (avif, "image/avif", (722, 1024)),
        (tiff, "image/tiff", (640, 480)),
        // Tiles joined, turned upright by its `irot` (not again by its EXIF).
        (
            imgsvc_testkit::photos::iphone_like_heic(),
            "image/heic",
            (120, 160),
        ),
    ] {
        let response = server.upload("tess", bytes, &[]).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{mime}");
        let record: Value = response.json().await.unwrap();
        assert_eq!(record["mimeType"], mime);
        assert_eq!(record["format"], "webp");
        assert_eq!(
            (record["width"].as_u64(), record["height"].as_u64()),
            (Some(size.0), Some(size.1)),
            "{mime}"
        );
    }
    let bmp = b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0".to_vec();
    let refused = server.upload("tess", bmp, &[]).await;
    let body = problem(
        refused,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_format",
    )
    .await;
    assert_eq!(body["detectedFormat"], "bmp");
}

on_both_backends!(
    avif_tiff_and_heic_uploads_keep_their_source_format,
    upload_get_patch_delete_round_trip,
    the_seeds_manual_cases_through_multipart,
    the_seeds_manual_cases_through_the_two_step_upload,
    listing_pages_through_45_uploads_newest_first_without_gaps,
    invalid_file_keys_are_not_found,
    if_match_star_matches_the_current_version,
);

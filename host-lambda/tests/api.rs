//! The HTTP API over real HTTP on an ephemeral port, on the embedded stores (filesystem +
//! SQLite), with failures injected through the ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use imgsvc_lambda::api::{AppState, router};
use imgsvc_lambda::local::Storage;
use imgsvc_lambda::record::ImageRecord;
use imgsvc_lambda::store::dynamodb::DynamoMetadataStore;
use imgsvc_lambda::store::{
    BlobStore, ListQuery, MetadataStore, Reservation, StoreError, StoredObject, Tombstone,
};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

fn corpus(file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus")
        .join(file);
    std::fs::read(path).unwrap()
}

/// The two ways to upload; the seeds' cases run through both.
#[derive(Debug, Clone, Copy)]
enum UploadPath {
    Multipart,
    TwoStep,
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    Embedded,
    Aws,
}

fn aws_endpoint() -> String {
    std::env::var("IMGSVC_TEST_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5055".to_owned())
}

/// SDK settings for the emulator: fixed region and dummy credentials.
async fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(aws_endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

struct Server {
    url: String,
    state: AppState,
    data: tempfile::TempDir,
    /// The S3 client and bucket of an AWS-backed server, for inspecting what is stored.
    s3: Option<(aws_sdk_s3::Client, String)>,
    client: reqwest::Client,
}

impl Server {
    async fn start(backend: Backend) -> Server {
        Self::start_with(backend, |state| state).await
    }

    /// A server whose state went through `adapt` (to inject failing ports).
    async fn start_with(backend: Backend, adapt: impl FnOnce(AppState) -> AppState) -> Server {
        let data = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sdk = aws_sdk_config().await;
        let (storage, s3) = match backend {
            Backend::Embedded => (Storage::Embedded, None),
            Backend::Aws => {
                // A fresh bucket and table per test, so tests can run in parallel.
                let name = format!(
                    "imgsvc-test-{}",
                    ulid::Ulid::new().to_string().to_lowercase()
                );
                let s3 = aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(&sdk)
                        .force_path_style(true)
                        .build(),
                );
                s3.create_bucket().bucket(&name).send().await.expect(
                    "S3 emulator not reachable: scripts/test starts it (or set IMGSVC_TEST_AWS_ENDPOINT)",
                );
                DynamoMetadataStore::new(aws_sdk_dynamodb::Client::new(&sdk), &name)
                    .create_table()
                    .await
                    .unwrap();
                let storage = Storage::Aws {
                    bucket: name.clone(),
                    table: name.clone(),
                    force_path_style: true,
                    cdn_url: format!("{}/{name}", aws_endpoint()),
                };
                (storage, Some((s3, name)))
            }
        };
        let state = imgsvc_lambda::local::state_with(data.path(), &url, &storage, &sdk)
            .await
            .unwrap();
        let app = router(adapt(state.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            url,
            state,
            data,
            s3,
            client: reqwest::Client::new(),
        }
    }

    fn token(&self, user: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.state.auth.issue(user, false, now, 3600).unwrap()
    }

    async fn upload(
        &self,
        user: &str,
        bytes: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = Form::new().part("file", Part::bytes(bytes).file_name("photo.jpg"));
        for (name, value) in extra {
            form = form.text(name.to_string(), value.to_string());
        }
        self.client
            .post(format!("{}/images", self.url))
            .bearer_auth(self.token(user))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// The two-step upload: `POST /uploads`, PUT the bytes to the returned URL, then
    /// `POST /uploads/{id}/complete` with the fields. Returns the first failing response,
    /// or the completion's.
    async fn upload_two_step(
        &self,
        user: &str,
        bytes: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        // The client declares what it will send; this one always claims a JPEG, as a lying
        // client might: the bytes decide on completion.
        let created = self
            .client
            .post(format!("{}/uploads", self.url))
            .bearer_auth(self.token(user))
            .json(&json!({"sizeBytes": bytes.len(), "contentType": "image/jpeg"}))
            .send()
            .await
            .unwrap();
        if created.status() != StatusCode::CREATED {
            return created;
        }
        let upload: Value = created.json().await.unwrap();
        assert_eq!(upload["method"], "PUT");
        assert_eq!(upload["headers"]["Content-Type"], "image/jpeg");
        let put = self
            .client
            .put(upload["uploadUrl"].as_str().unwrap())
            .header("content-type", "image/jpeg")
            .body(bytes)
            .send()
            .await
            .unwrap();
        if !put.status().is_success() {
            return put;
        }
        let mut fields = serde_json::Map::new();
        for (name, value) in extra {
            let value = if *name == "tags" {
                json!(value.split(',').collect::<Vec<_>>())
            } else {
                json!(value)
            };
            fields.insert((*name).to_owned(), value);
        }
        self.client
            .post(format!(
                "{}/uploads/{}/complete",
                self.url,
                upload["uploadId"].as_str().unwrap()
            ))
            .bearer_auth(self.token(user))
            .json(&fields)
            .send()
            .await
            .unwrap()
    }

    async fn upload_by(
        &self,
        path: UploadPath,
        user: &str,
        bytes: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        match path {
            UploadPath::Multipart => self.upload(user, bytes, extra).await,
            UploadPath::TwoStep => self.upload_two_step(user, bytes, extra).await,
        }
    }

    async fn get(&self, user: &str, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .bearer_auth(self.token(user))
            .send()
            .await
            .unwrap()
    }

    /// Every stored object's key.
    async fn objects(&self) -> Vec<String> {
        if let Some((s3, bucket)) = &self.s3 {
            let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
            return listed
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect();
        }
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let root = self.data.path().join("objects");
        let mut out = Vec::new();
        walk(&root, &mut out);
        out.iter()
            .filter_map(|p| p.strip_prefix(&root).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }
}

async fn problem(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    body
}

fn small_jpeg() -> Vec<u8> {
    corpus("skimage_rocket.jpg")
}

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
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
    let body = problem(
        server.upload_by(path, "alice", heic, &[]).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_format",
    )
    .await;
    assert_eq!(body["detectedFormat"], "heic");
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

/// A `BlobStore` that fails chosen puts, for proving that failed uploads leave nothing.
struct FailingBlobs {
    inner: Arc<dyn BlobStore>,
    fail_thumbnails: AtomicBool,
    fail_deletes: AtomicBool,
}

#[async_trait]
impl BlobStore for FailingBlobs {
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        cache_control: &str,
    ) -> Result<(), StoreError> {
        if key.contains("/thumbnails/") && self.fail_thumbnails.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        self.inner
            .put(key, bytes, content_type, cache_control)
            .await
    }
    async fn get(&self, key: &str, max_bytes: u64) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key, max_bytes).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        if self.fail_deletes.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        self.inner.delete(key).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StoreError> {
        self.inner.list(prefix).await
    }
}

async fn a_cleanup_that_fails_reports_the_objects_it_left(backend: Backend) {
    let server = Server::start(backend).await;
    let created: Value = server
        .upload("gil", small_jpeg(), &[])
        .await
        .json()
        .await
        .unwrap();
    let record = server
        .state
        .metadata
        .get(created["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let mut state = server.state.clone();
    let blobs = Arc::new(FailingBlobs {
        inner: state.blobs.clone(),
        fail_thumbnails: AtomicBool::new(false),
        fail_deletes: AtomicBool::new(true),
    });
    state.blobs = blobs.clone();
    // What could not be removed is said, so the log never claims a clean-up that failed.
    let mut left = imgsvc_lambda::upload::remove_objects(&state, &record).await;
    left.sort();
    let mut keys = vec![record.s3_key.clone(), record.thumbnail_key.clone()];
    keys.sort();
    assert_eq!(left, keys);
    blobs.fail_deletes.store(false, Ordering::SeqCst);
    assert!(
        imgsvc_lambda::upload::remove_objects(&state, &record)
            .await
            .is_empty()
    );
}

async fn a_store_failure_mid_upload_leaves_no_object_and_no_record(backend: Backend) {
    let server = Server::start_with(backend, |mut state| {
        state.blobs = Arc::new(FailingBlobs {
            inner: state.blobs.clone(),
            fail_thumbnails: AtomicBool::new(true),
            fail_deletes: AtomicBool::new(false),
        });
        state
    })
    .await;
    problem(
        server.upload("erin", small_jpeg(), &[]).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    )
    .await;
    assert!(
        server.objects().await.is_empty(),
        "{:?}",
        server.objects().await
    );
    let listing: Value = server.get("erin", "/images").await.json().await.unwrap();
    assert_eq!(listing["items"], json!([]));
}

async fn a_record_write_failure_removes_the_objects(backend: Backend) {
    // The objects get written, the record write fails: the objects must be removed again.
    let server = Server::start_with(backend, |mut state| {
        state.metadata = Arc::new(FailingCreate {
            inner: state.metadata.clone(),
        });
        state
    })
    .await;
    problem(
        server.upload("frank", small_jpeg(), &[]).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    )
    .await;
    assert!(
        server.objects().await.is_empty(),
        "{:?}",
        server.objects().await
    );
}

async fn idempotent_retries_create_one_record(backend: Backend) {
    let server = Server::start(backend).await;
    let send = |user: &'static str, key: &'static str, bytes: Vec<u8>| {
        let request = server
            .client
            .post(format!("{}/images", server.url))
            .bearer_auth(server.token(user))
            .header("idempotency-key", key)
            .multipart(Form::new().part("file", Part::bytes(bytes).file_name("a.jpg")));
        request.send()
    };
    let first = send("gina", "key-1", small_jpeg()).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let retry = send("gina", "key-1", small_jpeg()).await.unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first);
    // The same key for a different upload is refused; another user's key space is separate.
    let other_photo = corpus("skimage_coffee.png");
    problem(
        send("gina", "key-1", other_photo.clone()).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(
        send("hank", "key-1", small_jpeg()).await.unwrap().status(),
        StatusCode::CREATED
    );
    // A failed request frees its key for the retry.
    problem(
        send("gina", "key-2", b"not an image".to_vec())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "not_an_image",
    )
    .await;
    assert_eq!(
        send("gina", "key-2", other_photo).await.unwrap().status(),
        StatusCode::CREATED
    );
    // Concurrent duplicates: one creates, the others replay or are told to retry.
    let racing =
        futures_util::future::join_all((0..5).map(|_| send("gina", "key-3", small_jpeg()))).await;
    let mut ids = std::collections::HashSet::new();
    for response in racing {
        let response = response.unwrap();
        match response.status() {
            StatusCode::CREATED => {
                let body: Value = response.json().await.unwrap();
                ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            _ => {
                problem(response, StatusCode::CONFLICT, "idempotency_in_progress").await;
            }
        }
    }
    assert_eq!(ids.len(), 1);
    let listing: Value = server
        .get("gina", "/images?limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listing["items"].as_array().unwrap().len(), 3);
    problem(
        server
            .client
            .post(format!("{}/images", server.url))
            .bearer_auth(server.token("gina"))
            .header("idempotency-key", "")
            .multipart(Form::new().part("file", Part::bytes(small_jpeg())))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_idempotency_key",
    )
    .await;
}

/// A request that held its `Idempotency-Key` and died (kill -9) mid-upload leaves the key
/// reserved and never completed; once its lease has run out, a retry takes the key over.
async fn an_abandoned_idempotency_reservation_is_taken_over(backend: Backend) {
    let server = Server::start(backend).await;
    let send = |key: &'static str| {
        server
            .client
            .post(format!("{}/images", server.url))
            .bearer_auth(server.token("ivan"))
            .header("idempotency-key", key)
            .multipart(Form::new().part("file", Part::bytes(small_jpeg()).file_name("a.jpg")))
            .send()
    };
    // The fingerprint this upload gets, read from a completed key.
    assert_eq!(send("probe").await.unwrap().status(), StatusCode::CREATED);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let Some(Reservation::Completed { fingerprint, .. }) = server
        .state
        .metadata
        .find_idempotency("ivan", "probe", now)
        .await
        .unwrap()
    else {
        panic!("the probe's key was not completed");
    };
    // What the crashed request left an hour ago: reserved for 24 h, never completed.
    let crashed_at = now - 3600;
    assert_eq!(
        server
            .state
            .metadata
            .reserve_idempotency(
                "ivan",
                "crashed",
                &fingerprint,
                crashed_at,
                crashed_at + 86_400,
                crashed_at + 300
            )
            .await
            .unwrap(),
        Reservation::Reserved
    );
    let retry = send("crashed").await.unwrap();
    assert_eq!(
        retry.status(),
        StatusCode::CREATED,
        "{:?}",
        retry.text().await
    );
    let replay = send("crashed").await.unwrap();
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let listing: Value = server
        .get("ivan", "/images?limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listing["items"].as_array().unwrap().len(), 2);
}

/// An upload waits for a processing slot only so long (then 503 `busy`, its key freed), so
/// every upload ends well inside the idempotency lease.
#[tokio::test]
async fn an_upload_waits_for_a_processing_slot_only_so_long() {
    let server = Server::start_with(Backend::Embedded, |mut state| {
        state.limits.processing_queue_timeout = std::time::Duration::from_millis(300);
        state
    })
    .await;
    let all = server.state.processing.available_permits() as u32;
    let held = server
        .state
        .processing
        .clone()
        .acquire_many_owned(all)
        .await
        .unwrap();
    let send = || {
        server
            .client
            .post(format!("{}/images", server.url))
            .bearer_auth(server.token("quinn"))
            .header("idempotency-key", "queued")
            .timeout(std::time::Duration::from_secs(10))
            .multipart(Form::new().part("file", Part::bytes(small_jpeg()).file_name("a.jpg")))
            .send()
    };
    let refused = send()
        .await
        .expect("the upload waited for a slot with no end");
    assert!(refused.headers().contains_key("retry-after"));
    problem(refused, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    drop(held);
    assert_eq!(send().await.unwrap().status(), StatusCode::CREATED);
}

async fn idempotency_records_expire(backend: Backend) {
    let server = Server::start(backend).await;
    let store = &server.state.metadata;
    assert_eq!(
        store
            .reserve_idempotency("u", "k", "f1", 1000, 2000, 2000)
            .await
            .unwrap(),
        Reservation::Reserved
    );
    store.complete_idempotency("u", "k", "{}").await.unwrap();
    assert_eq!(
        store
            .reserve_idempotency("u", "k", "f1", 1999, 3000, 3000)
            .await
            .unwrap(),
        Reservation::Completed {
            fingerprint: "f1".into(),
            response: "{}".into()
        }
    );
    // At expiry the key is free again, for any request.
    assert_eq!(
        store
            .reserve_idempotency("u", "k", "f2", 2000, 4000, 4000)
            .await
            .unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        store
            .reserve_idempotency("u", "k", "f2", 2001, 4000, 4000)
            .await
            .unwrap(),
        Reservation::InProgress {
            fingerprint: "f2".into()
        }
    );
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let server = Server::start(Backend::Embedded).await;
    let document: Value = server
        .client
        .get(format!("{}/openapi.json", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "01NOSUCH")
            .replace("{key}", "images/none.webp");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let response = server
                .client
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{concrete}", server.url),
                )
                .bearer_auth(server.token("ivan"))
                .send()
                .await
                .unwrap();
            // A route that does not exist gets the router's own 404 `route_not_found` (or
            // 405 `method_not_allowed`); ours answer with the resource or another problem.
            let status = response.status();
            let body = response.bytes().await.unwrap();
            let code = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|problem| problem["code"].as_str().map(str::to_owned));
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED
                    && code.as_deref() != Some("route_not_found"),
                "{method} {path}: {status} {code:?}"
            );
        }
    }
    assert_eq!(operations, 11);
}

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
            let signature = server.state.url_signer.sign(&expired);
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
            .blobs
            .put(key, Bytes::from_static(b"x"), "image/webp", "no-store")
            .await
            .unwrap();
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sweep = |at: i64, delete: bool| {
        imgsvc_lambda::upload::sweep_orphans(&server.state, at, 3600, delete)
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
        imgsvc_lambda::api::uploads::sweep_staging(&server.state, now + 7200)
            .await
            .unwrap(),
        1
    );
    let mut left = server.objects().await;
    left.sort();
    assert_eq!(left, kept);
}

#[tokio::test]
async fn service_tokens_act_on_behalf_of_a_user_and_nobody_else_can() {
    let server = Server::start(Backend::Embedded).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let service = server.state.auth.issue("migrator", true, now, 600).unwrap();
    let form = Form::new().part("file", Part::bytes(small_jpeg()).file_name("a.jpg"));
    let created = server
        .client
        .post(format!("{}/images", server.url))
        .bearer_auth(&service)
        .header("x-on-behalf-of", "alice")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let record: Value = created.json().await.unwrap();
    assert_eq!(record["userId"], "alice");
    assert!(
        record["s3Key"]
            .as_str()
            .unwrap()
            .starts_with("images/alice/")
    );
    // It is alice's: she lists it; the service sees her listing when acting for her.
    let listed: Value = server.get("alice", "/images").await.json().await.unwrap();
    assert_eq!(listed["items"][0]["id"], record["id"]);
    let as_alice: Value = server
        .client
        .get(format!("{}/images", server.url))
        .bearer_auth(&service)
        .header("x-on-behalf-of", "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(as_alice["items"][0]["id"], record["id"]);
    // A user token may not act for anyone else, and the header must name a valid user.
    let forbidden = server
        .client
        .get(format!("{}/images", server.url))
        .bearer_auth(server.token("bob"))
        .header("x-on-behalf-of", "alice")
        .send()
        .await
        .unwrap();
    problem(forbidden, StatusCode::FORBIDDEN, "forbidden").await;
    let invalid = server
        .client
        .get(format!("{}/images", server.url))
        .bearer_auth(&service)
        .header("x-on-behalf-of", "../alice")
        .send()
        .await
        .unwrap();
    problem(invalid, StatusCode::BAD_REQUEST, "invalid_field").await;
}

/// A `MetadataStore` whose record creation always fails.
struct FailingCreate {
    inner: Arc<dyn MetadataStore>,
}

#[async_trait]
impl MetadataStore for FailingCreate {
    async fn create(&self, _record: &ImageRecord) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("injected failure".into()))
    }
    async fn get(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        self.inner.get(id).await
    }
    async fn put_if_newer(&self, record: &ImageRecord) -> Result<bool, StoreError> {
        self.inner.put_if_newer(record).await
    }
    async fn scan(
        &self,
        start: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ImageRecord>, Option<String>), StoreError> {
        self.inner.scan(start, limit).await
    }
    async fn update(&self, record: &ImageRecord, expected: u64) -> Result<(), StoreError> {
        self.inner.update(record, expected).await
    }
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    async fn put_tombstone_if_newer(&self, tombstone: &Tombstone) -> Result<bool, StoreError> {
        self.inner.put_tombstone_if_newer(tombstone).await
    }
    async fn tombstone(&self, id: &str) -> Result<Option<Tombstone>, StoreError> {
        self.inner.tombstone(id).await
    }
    async fn scan_tombstones(
        &self,
        start: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Tombstone>, Option<String>), StoreError> {
        self.inner.scan_tombstones(start, limit).await
    }
    async fn list(&self, query: ListQuery<'_>) -> Result<Vec<ImageRecord>, StoreError> {
        self.inner.list(query).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn reserve_idempotency(
        &self,
        user: &str,
        key: &str,
        fingerprint: &str,
        now: i64,
        expires: i64,
        lease_until: i64,
    ) -> Result<Reservation, StoreError> {
        self.inner
            .reserve_idempotency(user, key, fingerprint, now, expires, lease_until)
            .await
    }
    async fn find_idempotency(
        &self,
        user: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<Reservation>, StoreError> {
        self.inner.find_idempotency(user, key, now).await
    }
    async fn complete_idempotency(
        &self,
        user: &str,
        key: &str,
        response: &str,
    ) -> Result<(), StoreError> {
        self.inner.complete_idempotency(user, key, response).await
    }
    async fn release_idempotency(&self, user: &str, key: &str) -> Result<(), StoreError> {
        self.inner.release_idempotency(user, key).await
    }
}

/// Each contract test, once per adapter pair: filesystem + SQLite, and S3 + DynamoDB
/// through the real AWS SDK against the emulator `scripts/test` starts.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn embedded() {
                    super::$name(super::Backend::Embedded).await;
                }
                #[tokio::test]
                async fn aws() {
                    super::$name(super::Backend::Aws).await;
                }
            }
        )*
    };
}

on_both_backends!(
    upload_get_patch_delete_round_trip,
    listing_pages_through_45_uploads_newest_first_without_gaps,
    a_store_failure_mid_upload_leaves_no_object_and_no_record,
    a_record_write_failure_removes_the_objects,
    a_cleanup_that_fails_reports_the_objects_it_left,
    idempotent_retries_create_one_record,
    idempotency_records_expire,
    an_abandoned_idempotency_reservation_is_taken_over,
    two_step_upload_urls_are_signed_bounded_and_single_use,
    staged_uploads_are_single_use_and_end,
    open_staged_uploads_per_user_are_capped,
    sweeps_remove_orphans_and_expired_staging_only,
    the_seeds_manual_cases_through_multipart,
    the_seeds_manual_cases_through_the_two_step_upload,
);

#[tokio::test]
async fn metrics_count_requests_per_operation_and_status() {
    let server = Server::start(Backend::Embedded).await;
    let jpeg = small_jpeg();
    let size = jpeg.len();
    assert_eq!(
        server.upload("alice", jpeg, &[]).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        server.get("alice", "/images/nope").await.status(),
        StatusCode::NOT_FOUND
    );
    let text = server
        .client
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "imgsvc_requests_total{operation=\"POST /images\",status=\"201\"} 1".to_owned(),
        "imgsvc_requests_total{operation=\"GET /images/{id}\",status=\"404\"} 1".to_owned(),
        format!("imgsvc_upload_bytes_total {size}"),
        "imgsvc_processing_seconds_count 1".to_owned(),
        "imgsvc_processing_stage_seconds_count{stage=\"decode\"} 1".to_owned(),
        "imgsvc_processing_stage_seconds_count{stage=\"display\"} 1".to_owned(),
        "imgsvc_processing_stage_seconds_count{stage=\"thumbnail\"} 1".to_owned(),
        "imgsvc_processing_stage_seconds_count{stage=\"encode_display\"} 1".to_owned(),
        "imgsvc_processing_stage_seconds_count{stage=\"encode_thumbnail\"} 1".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected} not in\n{text}");
    }
}

// --- Issue 17 (the service edge): hostile requests get a quick, typed 4xx -------------

/// One request written by hand, for paths an HTTP client would normalise (`..`, `%00`):
/// the status, the `Content-Type` and the body.
async fn raw_get(url: &str, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// A multipart body of `tags` fields, one per tag, with the file last.
fn form_with_tag_fields(boundary: &str, tags: &[String]) -> Vec<u8> {
    let mut body = Vec::new();
    for tag in tags {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\n{tag}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\
             Content-Type: image/jpeg\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&small_jpeg());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// Issue 17 item 1: tag lists were validated in O(N²) on the async runtime (64,000 tags:
/// 6.2 s of CPU before the 400). Now refused as soon as they pass the limits: < 50 ms.
#[tokio::test]
async fn fifty_thousand_tags_are_refused_within_50_ms() {
    let server = Server::start(Backend::Embedded).await;
    let token = server.token("mia");
    let tags: Vec<String> = (0..50_000).map(|i| format!("tag{i}")).collect();
    let json_body = serde_json::to_vec(&json!({"tags": tags, "version": 1})).unwrap();
    // Under the JSON body limit, the tags themselves are what is refused.
    let fitting: Vec<String> = (0..6_000).map(|i| format!("t{i}")).collect();
    let fitting = serde_json::to_vec(&json!({"tags": fitting, "version": 1})).unwrap();
    assert!(fitting.len() < 64 * 1024);
    let boundary = "edge17boundary";
    let form = form_with_tag_fields(boundary, &tags);
    let requests = [
        (
            "PATCH /images/{id}",
            server
                .client
                .patch(format!("{}/images/01NOSUCHIMAGE", server.url))
                .header("content-type", "application/json")
                .body(json_body.clone()),
        ),
        (
            "PATCH /images/{id} (6,000 tags)",
            server
                .client
                .patch(format!("{}/images/01NOSUCHIMAGE", server.url))
                .header("content-type", "application/json")
                .body(fitting),
        ),
        (
            "POST /uploads/{id}/complete",
            server
                .client
                .post(format!("{}/uploads/01NOSUCHUPLOAD/complete", server.url))
                .header("content-type", "application/json")
                .body(json_body.clone()),
        ),
        (
            "POST /images",
            server
                .client
                .post(format!("{}/images", server.url))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(form),
        ),
    ];
    for (operation, request) in requests {
        let started = std::time::Instant::now();
        let response = request.bearer_auth(&token).send().await.unwrap();
        let elapsed = started.elapsed();
        let status = response.status();
        println!("{operation}: {status} in {elapsed:?}");
        assert!(status.is_client_error(), "{operation}: {status}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{operation}"
        );
        assert!(
            elapsed < std::time::Duration::from_millis(50),
            "{operation}: {status} after {elapsed:?}"
        );
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

/// Issue 17 item 9: the framework's own rejections were `text/plain`. Every error is
/// `application/problem+json` with a `code`.
#[tokio::test]
async fn framework_rejections_are_problems_with_a_code() {
    let server = Server::start(Backend::Embedded).await;
    let token = server.token("noa");
    let url = &server.url;
    let client = &server.client;
    let no_boundary = client
        .post(format!("{url}/images"))
        .bearer_auth(&token)
        .header("content-type", "multipart/form-data")
        .body("x")
        .send()
        .await
        .unwrap();
    problem(no_boundary, StatusCode::BAD_REQUEST, "invalid_multipart").await;
    let not_multipart = client
        .post(format!("{url}/images"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(not_multipart, StatusCode::BAD_REQUEST, "invalid_multipart").await;
    problem(
        server.get("noa", "/images?colour=red").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    let huge_patch = client
        .patch(format!("{url}/images/01NOSUCHIMAGE"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    problem(huge_patch, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    let unsigned = client
        .put(format!(
            "{url}/staging/uploads/noa/01NOSUCH?expires=1&size=1"
        ))
        .header("content-type", "image/jpeg")
        .body("x")
        .send()
        .await
        .unwrap();
    problem(unsigned, StatusCode::FORBIDDEN, "invalid_signature").await;
    let no_route = client
        .get(format!("{url}/no/such/route"))
        .send()
        .await
        .unwrap();
    problem(no_route, StatusCode::NOT_FOUND, "route_not_found").await;
    let wrong_method = client
        .put(format!("{url}/images"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    problem(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    // A path parameter that is not UTF-8 once decoded.
    let (status, content_type, _) = raw_get(url, "/files/images/%FF").await;
    assert_eq!(
        (status, content_type.as_str()),
        (400, "application/problem+json")
    );
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

/// Issue 17 item 10: the authentication scheme is case-insensitive (RFC 9110 11.1).
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let server = Server::start(Backend::Embedded).await;
    let token = server.token("pia");
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = server
            .client
            .get(format!("{}/images", server.url))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
}

/// Issue 17 item 11: a client's `X-Request-Id` was logged verbatim (4 KB accepted). Only a
/// short printable id is kept; anything else is replaced by a fresh one.
#[tokio::test]
async fn only_a_short_printable_request_id_reaches_the_log() {
    use std::sync::Mutex;
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    // A current-thread test runtime: the server's tasks log on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = Server::start(Backend::Embedded).await;
    let long = "r".repeat(4096);
    let ids = [
        ("good-id_1.2:3", true),
        (long.as_str(), false),
        ("has space", false),
        ("quote\"and{brace}", false),
        ("", false),
    ];
    for (id, _) in ids {
        server
            .client
            .get(format!("{}/health", server.url))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let logged: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("GET /health"))
        .filter_map(|line| line.split("requestId=").nth(1))
        .map(|rest| rest.split([' ', '}']).next().unwrap())
        .collect();
    assert_eq!(logged.len(), ids.len(), "{log}");
    for ((sent, kept), logged) in ids.iter().zip(&logged) {
        if *kept {
            assert_eq!(logged, sent);
        } else {
            assert!(
                logged.len() == 26 && ulid::Ulid::from_string(logged).is_ok(),
                "{sent:.40} logged as {logged:.40}"
            );
        }
    }
}

/// Issue 17 item 13: the data dir was created 0755 and `imgsvc.sqlite` 0644.
#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let sdk = aws_sdk_config().await;
    let _state =
        imgsvc_lambda::local::state_with(&data, "http://127.0.0.1:1", &Storage::Embedded, &sdk)
            .await
            .unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data dir");
    assert_eq!(mode(&data.join("imgsvc.sqlite")), 0o600, "database");
    assert_eq!(mode(&data.join("secret")), 0o600, "secret");
}

/// Issue 17 item 14: idempotency entries were never deleted. Expired SQLite rows are
/// removed as reservations come in; DynamoDB's table has TTL on `expiresAt`.
async fn expired_idempotency_entries_are_deleted(backend: Backend) {
    let server = Server::start(backend).await;
    let store = &server.state.metadata;
    for key in ["a", "b", "c"] {
        store
            .reserve_idempotency("u", key, "f", 1_000, 2_000, 2_000)
            .await
            .unwrap();
    }
    store.complete_idempotency("u", "a", "{}").await.unwrap();
    // A day later, the next reservation sweeps the expired entries away.
    store
        .reserve_idempotency("u", "d", "f", 90_000, 180_000, 90_300)
        .await
        .unwrap();
    match backend {
        Backend::Embedded => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(server.data.path().join("imgsvc.sqlite"));
            let mut connection = sqlx::ConnectOptions::connect(&options).await.unwrap();
            let keys: Vec<(String,)> = sqlx::query_as("SELECT key FROM idempotency ORDER BY key")
                .fetch_all(&mut connection)
                .await
                .unwrap();
            assert_eq!(keys, [("d".to_owned(),)]);
        }
        Backend::Aws => {
            let (_, table) = server.s3.as_ref().unwrap();
            let ttl = aws_sdk_dynamodb::Client::new(&aws_sdk_config().await)
                .describe_time_to_live()
                .table_name(table)
                .send()
                .await
                .unwrap();
            let description = ttl.time_to_live_description().unwrap();
            assert_eq!(description.attribute_name(), Some("expiresAt"));
            assert_eq!(
                description.time_to_live_status(),
                Some(&aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled)
            );
        }
    }
}

on_both_backends!(
    invalid_file_keys_are_not_found,
    if_match_star_matches_the_current_version,
    expired_idempotency_entries_are_deleted,
);

/// Issue 17 item 1: the request limits (`IMGSVC_MAX_JSON_BODY_BYTES`,
/// `IMGSVC_MAX_FORM_PARTS`, `IMGSVC_MAX_FORM_TEXT_BYTES`) are the state's.
#[tokio::test]
async fn the_request_limits_are_configurable() {
    let server = Server::start_with(Backend::Embedded, |mut state| {
        state.max_json_body_bytes = 1024;
        state.form_limits = imgsvc_lambda::api::FormLimits {
            parts: 4,
            text_bytes: 2048,
        };
        state
    })
    .await;
    let tags: Vec<String> = (0..4).map(|i| format!("t{i}")).collect();
    let form = |tags: &[String]| {
        server
            .client
            .post(format!("{}/images", server.url))
            .bearer_auth(server.token("quinn"))
            .header("content-type", "multipart/form-data; boundary=b0und")
            .body(form_with_tag_fields("b0und", tags))
            .send()
    };
    problem(
        form(&tags).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_multipart",
    )
    .await;
    assert_eq!(
        form(&tags[..3]).await.unwrap().status(),
        StatusCode::CREATED
    );
    let long = vec!["x".repeat(1500), "y".repeat(1500)];
    let refused = problem(
        form(&long).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_field",
    )
    .await;
    assert!(
        refused["detail"].as_str().unwrap().contains("2048"),
        "{refused}"
    );
    let patch = |body: Vec<u8>| {
        server
            .client
            .patch(format!("{}/images/01NOSUCHIMAGE", server.url))
            .bearer_auth(server.token("quinn"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let title = "x".repeat(1100);
    let over = serde_json::to_vec(&json!({"title": title, "version": 1})).unwrap();
    let body = problem(
        patch(over).await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("1024"), "{body}");
    // Under it, the request goes on to the handler (no such image).
    let under = serde_json::to_vec(&json!({"title": "x", "version": 1})).unwrap();
    problem(
        patch(under).await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

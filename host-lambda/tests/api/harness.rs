//! The server every contract test talks to: the router in process on an ephemeral port,
//! on the embedded stores or on S3 + DynamoDB (the emulator), its state adaptable to
//! inject failing ports.

use std::path::{Path, PathBuf};

use crate::common::aws::{aws_endpoint, aws_sdk_config, fresh_bucket_and_table};
use imgsvc_lambda::api::{AppState, HttpSettings, router};
use imgsvc_lambda::wiring::{AppOptions, Storage};
use imgsvc_testkit::photos::read_corpus as corpus;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// The two ways to upload; the seeds' cases run through both.
#[derive(Debug, Clone, Copy)]
pub enum UploadPath {
    Multipart,
    TwoStep,
}

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Embedded,
    Aws,
}

pub struct Server {
    pub url: String,
    pub state: AppState,
    pub data: tempfile::TempDir,
    /// The S3 client and bucket of an AWS-backed server, for inspecting what is stored.
    pub s3: Option<(aws_sdk_s3::Client, String)>,
    pub client: reqwest::Client,
}

impl Server {
    pub async fn start(backend: Backend) -> Server {
        Self::start_with(backend, |state| state).await
    }

    /// A server whose state went through `adapt` (to inject failing ports).
    pub async fn start_with(backend: Backend, adapt: impl FnOnce(AppState) -> AppState) -> Server {
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
                let s3 = fresh_bucket_and_table(&sdk, &name).await;
                let storage = Storage::Aws {
                    bucket: name.clone(),
                    table: name.clone(),
                    force_path_style: true,
                    cdn_url: format!("{}/{name}", aws_endpoint()),
                };
                (storage, Some((s3, name)))
            }
        };
        let app =
            imgsvc_lambda::wiring::app(data.path(), &url, &storage, &sdk, AppOptions::default())
                .await
                .unwrap();
        let state = AppState::new(app, HttpSettings::default());
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

    pub fn token(&self, user: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.state.app.auth.issue(user, false, now, 3600).unwrap()
    }

    pub async fn upload(
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
    pub async fn upload_two_step(
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

    pub async fn upload_by(
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

    pub async fn get(&self, user: &str, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .bearer_auth(self.token(user))
            .send()
            .await
            .unwrap()
    }

    /// Every stored object's key.
    pub async fn objects(&self) -> Vec<String> {
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

pub async fn problem(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
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

pub fn small_jpeg() -> Vec<u8> {
    corpus("skimage_rocket.jpg")
}

/// Each contract test, once per adapter pair: filesystem + SQLite, and S3 + DynamoDB
/// through the real AWS SDK against the emulator `scripts/test` starts.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn embedded() {
                    super::$name(crate::harness::Backend::Embedded).await;
                }
                #[tokio::test]
                async fn aws() {
                    super::$name(crate::harness::Backend::Aws).await;
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;

/// One request written by hand, for paths an HTTP client would normalise (`..`, `%00`):
/// the status, the `Content-Type` and the body.
pub async fn raw_get(url: &str, path: &str) -> (u16, String, String) {
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

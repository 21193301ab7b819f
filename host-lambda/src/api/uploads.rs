//! The two-step upload real deployments need (Lambda can't take a 10 MiB body):
//! `POST /uploads` → a short-lived URL; the client PUTs the original there;
//! `POST /uploads/{id}/complete` → processed like `POST /images`, staged original removed.

use async_trait::async_trait;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::BytesMut;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::AppState;
use super::error::ApiError;
use super::images::{create_with_idempotency, too_large_body};
use crate::auth::Caller;
use crate::record;
use crate::store::{Reservation, StoreError, UploadStaging};
use crate::upload::UploadFields;

/// How long an upload URL stays valid.
pub const UPLOAD_URL_SECONDS: i64 = 15 * 60;

fn staged_key(user_id: &str, upload_id: &str) -> String {
    format!("uploads/{user_id}/{upload_id}")
}

/// Signs and checks the local server's upload URLs (HMAC-SHA256 over key, expiry, size).
pub struct UrlSigner {
    key: Vec<u8>,
}

impl UrlSigner {
    pub fn new(key: &[u8]) -> UrlSigner {
        UrlSigner { key: key.to_vec() }
    }

    fn mac(&self, key: &str, expires_at: i64, max_bytes: u64) -> Hmac<Sha256> {
        let mut mac = super::cursor::keyed_mac(&self.key);
        mac.update(format!("PUT\n{key}\n{expires_at}\n{max_bytes}").as_bytes());
        mac
    }

    pub fn sign(&self, key: &str, expires_at: i64, max_bytes: u64) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(key, expires_at, max_bytes).finalize().into_bytes())
    }

    pub fn verify(&self, key: &str, expires_at: i64, max_bytes: u64, signature: &str) -> bool {
        URL_SAFE_NO_PAD.decode(signature).is_ok_and(|tag| {
            self.mac(key, expires_at, max_bytes)
                .verify_slice(&tag)
                .is_ok()
        })
    }
}

/// Local staging: URLs to this server's `PUT /staging/{key}`, signed with `UrlSigner`.
pub struct LocalStaging {
    pub base_url: String,
    pub signer: std::sync::Arc<UrlSigner>,
}

#[async_trait]
impl UploadStaging for LocalStaging {
    async fn presign_put(
        &self,
        key: &str,
        max_bytes: u64,
        expires_at: i64,
    ) -> Result<String, StoreError> {
        let signature = self.signer.sign(key, expires_at, max_bytes);
        Ok(format!(
            "{}/staging/{key}?expires={expires_at}&max={max_bytes}&sig={signature}",
            self.base_url.trim_end_matches('/')
        ))
    }
}

/// `POST /uploads`: a new upload id and the URL to PUT the original to.
pub async fn create_upload(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let upload_id = ulid::Ulid::new().to_string();
    let expires_at = time::OffsetDateTime::now_utc().unix_timestamp() + UPLOAD_URL_SECONDS;
    let max_bytes = state.policy.max_input_bytes;
    let url = state
        .staging
        .presign_put(
            &staged_key(&caller.user_id, &upload_id),
            max_bytes,
            expires_at,
        )
        .await?;
    let expires = time::OffsetDateTime::from_unix_timestamp(expires_at)
        .map(record::iso8601)
        .unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "uploadId": upload_id,
            "uploadUrl": url,
            "method": "PUT",
            "maxBytes": max_bytes,
            "expiresAt": expires,
            "completeUrl": format!("/uploads/{upload_id}/complete"),
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct SignedParams {
    expires: i64,
    max: u64,
    sig: String,
}

/// `PUT /staging/{key}?expires&max&sig`: the local stand-in for a presigned S3 PUT. The
/// signature is the authorisation; the body is streamed and refused past `max`.
pub async fn put_staged(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(params): Query<SignedParams>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let valid = key.starts_with("uploads/")
        && params.expires > now
        && state
            .url_signer
            .verify(&key, params.expires, params.max, &params.sig);
    if !valid {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_signature",
            "the upload URL is invalid or has expired",
        ));
    }
    let limit = usize::try_from(params.max).unwrap_or(usize::MAX);
    let mut stream = body.into_data_stream();
    let mut buffer = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
        if buffer.len() + chunk.len() > limit {
            return Err(too_large_body());
        }
        buffer.extend_from_slice(&chunk);
    }
    state
        .blobs
        .put(
            &key,
            buffer.freeze(),
            "application/octet-stream",
            "no-store",
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /uploads/{id}/complete` with optional JSON `{albumId, title, tags}`: process the
/// staged original with the same checks and response as `POST /images`. The staged
/// original is removed whatever the outcome; a retry after success replays the result.
pub async fn complete_upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(upload_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let upload_id = record::validate_id("uploadId", &upload_id)?;
    let fields = parse_fields(&body)?;
    let key = staged_key(&caller.user_id, &upload_id);
    let idempotency_key = Some(format!("upload:{upload_id}"));
    let Some(bytes) = state.blobs.get(&key).await? else {
        // Already completed (the staged original is removed then)? Replay the result.
        return replay_completed(&state, &caller, &upload_id).await;
    };
    if bytes.len() as u64 > state.policy.max_input_bytes {
        state.blobs.delete(&key).await?;
        return Err(too_large_body());
    }
    let result = create_with_idempotency(&state, &caller, idempotency_key, bytes, fields).await;
    if let Err(error) = state.blobs.delete(&key).await {
        tracing::error!(key = %key, error = %error, "could not remove staged original");
    }
    result
}

async fn replay_completed(
    state: &AppState,
    caller: &Caller,
    upload_id: &str,
) -> Result<Response, ApiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let key = format!("upload:{upload_id}");
    match state
        .metadata
        .find_idempotency(&caller.user_id, &key, now)
        .await?
    {
        Some(Reservation::Completed { response, .. }) => {
            let record: record::ImageRecord = serde_json::from_str(&response)
                .map_err(|e| StoreError::Unavailable(format!("bad idempotency record: {e}")))?;
            Ok(super::images::created(&record, true))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "upload_not_found",
            "no original was uploaded for this id (or it expired)",
        )),
    }
}

/// The optional JSON body of `complete`: `albumId`, `title`, `tags`.
fn parse_fields(body: &[u8]) -> Result<UploadFields, ApiError> {
    let mut fields = UploadFields::default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(fields);
    }
    let invalid = |detail: String| ApiError::bad_request("invalid_body", detail);
    let value: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| invalid("the body must be a JSON object".into()))?;
    for (key, value) in object {
        match (key.as_str(), value) {
            ("title", Value::String(s)) => fields.title = record::validate_title(s)?,
            ("albumId", Value::String(s)) => {
                fields.album_id = Some(record::validate_id("albumId", s)?)
            }
            ("tags", Value::Array(items)) => {
                let tags: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                fields.tags = record::validate_tags(
                    tags.ok_or_else(|| invalid("tags must be strings".into()))?,
                )?;
            }
            (other, _) => return Err(invalid(format!("unexpected field {other:?}"))),
        }
    }
    Ok(fields)
}

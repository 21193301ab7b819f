//! The two-step upload real deployments need (Lambda can't take a 10 MiB body):
//! `POST /uploads` → a short-lived URL; the client PUTs the original there;
//! `POST /uploads/{id}/complete` → processed like `POST /images`, staged original removed.

use async_trait::async_trait;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
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
use super::images::{body_rejection, create_with_idempotency, too_large_body};
use crate::auth::Caller;
use crate::record;
use crate::store::{Reservation, StagedPut, StoreError, StoredObject, UploadStaging};
use crate::upload::UploadFields;

/// How long an upload URL stays valid.
pub const UPLOAD_URL_SECONDS: i64 = 15 * 60;

fn staged_key(user_id: &str, upload_id: &str) -> String {
    format!("uploads/{user_id}/{upload_id}")
}

/// When an upload's URL expires (Unix seconds): its id is the ULID `POST /uploads` minted,
/// so it carries its creation time. `None` for an id this service never minted.
fn upload_url_expiry(upload_id: &str) -> Option<i64> {
    let minted = ulid::Ulid::from_string(upload_id).ok()?;
    let created = i64::try_from(minted.timestamp_ms() / 1000).ok()?;
    Some(created.saturating_add(UPLOAD_URL_SECONDS))
}

/// Whether a staged object is past its upload's expiry plus `grace` at `now`: by its
/// upload id, or (a file that is no upload id, such as a half-written one) by when it
/// was written.
fn staged_object_expired(object: &StoredObject, grace: i64, now: i64) -> bool {
    let name = object.key.rsplit('/').next().unwrap_or_default();
    let expiry = upload_url_expiry(name)
        .unwrap_or_else(|| object.modified.saturating_add(UPLOAD_URL_SECONDS));
    expiry.saturating_add(grace) < now
}

fn grace_seconds(state: &AppState) -> i64 {
    i64::try_from(state.limits.upload_grace.as_secs()).unwrap_or(i64::MAX)
}

/// Remove the staged originals whose upload expired (plus the grace period) before `now`:
/// what the server's sweep runs at start and periodically. How many it removed.
pub async fn sweep_staging(state: &AppState, now: i64) -> Result<usize, StoreError> {
    let grace = grace_seconds(state);
    let mut removed = 0;
    for object in state.blobs.list("uploads/").await? {
        if staged_object_expired(&object, grace, now) {
            state.blobs.delete(&object.key).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Refuse a user's upload when they already have `max_open_uploads` staged originals
/// that are not completed nor expired (so nobody can fill the disk or bucket with them).
async fn check_open_uploads(state: &AppState, user_id: &str, now: i64) -> Result<(), ApiError> {
    let grace = grace_seconds(state);
    let open = state
        .blobs
        .list(&format!("uploads/{user_id}/"))
        .await?
        .iter()
        .filter(|object| !staged_object_expired(object, grace, now))
        .count();
    if open >= state.limits.max_open_uploads {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_uploads",
            format!(
                "{open} staged uploads are open; complete them or let them expire first (at most {})",
                state.limits.max_open_uploads
            ),
        ));
    }
    Ok(())
}

/// Signs and checks the local server's upload URLs: HMAC-SHA256 over everything a
/// `StagedPut` binds (key, expiry, exact size, content type).
pub struct UrlSigner {
    key: Vec<u8>,
}

impl UrlSigner {
    pub fn new(key: &[u8]) -> UrlSigner {
        UrlSigner { key: key.to_vec() }
    }

    fn mac(&self, put: &StagedPut) -> Hmac<Sha256> {
        let mut mac = super::cursor::keyed_mac(&self.key);
        mac.update(
            format!(
                "PUT\n{}\n{}\n{}\n{}",
                put.key, put.expires_at, put.size_bytes, put.content_type
            )
            .as_bytes(),
        );
        mac
    }

    pub fn sign(&self, put: &StagedPut) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(put).finalize().into_bytes())
    }

    pub fn verify(&self, put: &StagedPut, signature: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(signature)
            .is_ok_and(|tag| self.mac(put).verify_slice(&tag).is_ok())
    }
}

/// Local staging: URLs to this server's `PUT /staging/{key}`, signed with `UrlSigner`.
pub struct LocalStaging {
    pub base_url: String,
    pub signer: std::sync::Arc<UrlSigner>,
}

#[async_trait]
impl UploadStaging for LocalStaging {
    async fn presign_put(&self, put: &StagedPut) -> Result<String, StoreError> {
        let signature = self.signer.sign(put);
        Ok(format!(
            "{}/staging/{}?expires={}&size={}&sig={signature}",
            self.base_url.trim_end_matches('/'),
            put.key,
            put.expires_at,
            put.size_bytes,
        ))
    }
}

/// The body of `POST /uploads`: what the client will PUT, so the URL can be bound to it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadRequest {
    size_bytes: u64,
    content_type: String,
}

/// `POST /uploads` with `{sizeBytes, contentType}`: a new upload id and a URL that accepts
/// exactly that body. Oversized declarations are refused here (413), non-image types too
/// (400); what the bytes really are is decided on completion, as for `POST /images`.
pub async fn create_upload(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| body_rejection(r, state.max_json_body_bytes))?;
    let request: UploadRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("expected {{\"sizeBytes\": n, \"contentType\": \"image/…\"}}: {e}"),
        )
    })?;
    let max_bytes = state.policy.max_input_bytes;
    if request.size_bytes > max_bytes {
        return Err(too_large_body());
    }
    if request.size_bytes == 0 {
        return Err(ApiError::bad_request("empty_input", "the upload is empty"));
    }
    let content_type = request.content_type.trim().to_ascii_lowercase();
    let is_image_type = content_type
        .strip_prefix("image/")
        .is_some_and(|subtype| !subtype.is_empty() && subtype.bytes().all(is_token_byte));
    if !is_image_type {
        return Err(ApiError::bad_request(
            "not_an_image",
            format!("contentType must be an image/* type, not {content_type:?}"),
        ));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    check_open_uploads(&state, &caller.user_id, now).await?;
    let upload_id = ulid::Ulid::new().to_string();
    let put = StagedPut {
        key: staged_key(&caller.user_id, &upload_id),
        size_bytes: request.size_bytes,
        content_type,
        expires_at: upload_url_expiry(&upload_id).unwrap_or(now + UPLOAD_URL_SECONDS),
    };
    let url = state.staging.presign_put(&put).await?;
    let expires = time::OffsetDateTime::from_unix_timestamp(put.expires_at)
        .map(record::iso8601)
        .unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "uploadId": upload_id,
            "uploadUrl": url,
            "method": "PUT",
            "headers": {
                "Content-Type": put.content_type,
                "Content-Length": put.size_bytes.to_string(),
            },
            "maxBytes": max_bytes,
            "expiresAt": expires,
            "completeUrl": format!("/uploads/{upload_id}/complete"),
        })),
    )
        .into_response())
}

/// RFC 9110 token characters (what a media subtype may contain).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[derive(Deserialize)]
pub struct SignedParams {
    expires: i64,
    size: u64,
    sig: String,
}

/// `PUT /staging/{key}?expires&size&sig`: the local stand-in for a presigned S3 PUT. The
/// signature is the authorisation and binds the `Content-Type` and the exact size; the
/// body is streamed and refused past that size.
pub async fn put_staged(
    State(state): State<AppState>,
    Path(key): Path<String>,
    params: Result<Query<SignedParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    // A URL without its signature parameters is an invalid URL, like a tampered one.
    let Ok(Query(params)) = params else {
        return Err(invalid_signature());
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let put = StagedPut {
        key,
        size_bytes: params.size,
        content_type,
        expires_at: params.expires,
    };
    let valid = put.key.starts_with("uploads/")
        && put.expires_at > now
        && state.url_signer.verify(&put, &params.sig);
    if !valid {
        return Err(invalid_signature());
    }
    // One PUT per URL: not a second one, nor one after `complete` (which removes the
    // original, and would otherwise let the URL stage again).
    let (user_id, upload_id) = put
        .key
        .strip_prefix("uploads/")
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or_default();
    let used = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "upload_used",
            "this upload URL was already used",
        )
    };
    // A zero-byte limit only asks whether the object exists (staged originals are never
    // empty).
    match state.blobs.get(&put.key, 0).await {
        Ok(Some(_)) | Err(StoreError::TooLarge { .. }) => return Err(used()),
        Ok(None) => {}
        Err(error) => return Err(error.into()),
    }
    if state
        .metadata
        .find_idempotency(user_id, &format!("upload:{upload_id}"), now)
        .await?
        .is_some()
    {
        return Err(used());
    }
    check_open_uploads(&state, user_id, now).await?;
    let limit = usize::try_from(put.size_bytes).unwrap_or(usize::MAX);
    let mut stream = body.into_data_stream();
    let mut buffer = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::from_body_error(&e, || ApiError::bad_request("invalid_body", e.to_string()))
        })?;
        if buffer.len() + chunk.len() > limit {
            return Err(too_large_body());
        }
        buffer.extend_from_slice(&chunk);
    }
    if buffer.len() != limit {
        return Err(ApiError::bad_request(
            "size_mismatch",
            format!(
                "the body is {} bytes, the upload declared {limit}",
                buffer.len()
            ),
        ));
    }
    state
        .blobs
        .put(&put.key, buffer.freeze(), &put.content_type, "no-store")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn invalid_signature() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "invalid_signature",
        "the upload URL is invalid or has expired, or the Content-Type is not the one declared",
    )
}

/// `POST /uploads/{id}/complete` with optional JSON `{albumId, title, tags}`: process the
/// staged original with the same checks and response as `POST /images`. The staged
/// original is removed whatever the outcome; a retry after success replays the result.
pub async fn complete_upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(upload_id): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| body_rejection(r, state.max_json_body_bytes))?;
    let upload_id = record::validate_id("uploadId", &upload_id)?;
    let fields = parse_fields(&body)?;
    let key = staged_key(&caller.user_id, &upload_id);
    let idempotency_key = Some(format!("upload:{upload_id}"));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let Some(expires_at) = upload_url_expiry(&upload_id) else {
        return Err(upload_not_found());
    };
    if expires_at.saturating_add(grace_seconds(&state)) < now {
        // Too late to complete: the original goes; a completed upload still replays.
        state.blobs.delete(&key).await?;
        return replay_completed(&state, &caller, &upload_id)
            .await
            .map_err(|error| {
                if error.code == "upload_not_found" {
                    ApiError::new(
                        StatusCode::GONE,
                        "upload_expired",
                        "this upload expired before it was completed; start a new one",
                    )
                } else {
                    error
                }
            });
    }
    let bytes = match state.blobs.get(&key, state.policy.max_input_bytes).await {
        Ok(Some(bytes)) => bytes,
        // Already completed (the staged original is removed then)? Replay the result.
        Ok(None) => return replay_completed(&state, &caller, &upload_id).await,
        Err(error @ StoreError::TooLarge { .. }) => {
            state.blobs.delete(&key).await?;
            return Err(error.into());
        }
        Err(error) => return Err(error.into()),
    };
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
        _ => Err(upload_not_found()),
    }
}

fn upload_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "upload_not_found",
        "no original was uploaded for this id (or it expired)",
    )
}

/// The optional JSON body of `complete`: `albumId`, `title`, `tags`.
pub fn parse_fields(body: &[u8]) -> Result<UploadFields, ApiError> {
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

//! The two-step upload real deployments need (Lambda can't take a 10 MiB body):
//! `POST /uploads` → a short-lived URL; the client PUTs the original there;
//! `POST /uploads/{id}/complete` → processed like `POST /images`, staged original removed.
//! The staging rules (keys, expiry) are the upload use case's (`upload`).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::images::created_response;
use super::requests::{
    SignedParams, UploadRequest, body_rejection, is_token_byte, parse_completion_fields,
    too_large_body,
};
use crate::auth::Caller;
use crate::record;
use crate::store::{Reservation, StagedPut, StoreError};
use crate::upload::{
    self, UPLOAD_URL_SECONDS, staged_key, staged_object_expired, upload_url_expiry,
};

fn grace_seconds(state: &AppState) -> i64 {
    i64::try_from(state.app.limits.upload_grace.as_secs()).unwrap_or(i64::MAX)
}

/// Refuse a user's upload when they already have `max_open_uploads` staged originals
/// that are not completed nor expired (so nobody can fill the disk or bucket with them).
async fn check_open_uploads(state: &AppState, user_id: &str, now: i64) -> Result<(), ApiError> {
    let grace = grace_seconds(state);
    let open = state
        .app
        .blobs
        .list(&format!("uploads/{user_id}/"))
        .await?
        .iter()
        .filter(|object| !staged_object_expired(object, grace, now))
        .count();
    if open >= state.app.limits.max_open_uploads {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_uploads",
            format!(
                "{open} staged uploads are open; complete them or let them expire first (at most {})",
                state.app.limits.max_open_uploads
            ),
        ));
    }
    Ok(())
}

/// `POST /uploads` with `{sizeBytes, contentType}`: a new upload id and a URL that accepts
/// exactly that body. Oversized declarations are refused here (413), non-image types too
/// (400); what the bytes really are is decided on completion, as for `POST /images`.
pub async fn post_upload(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| body_rejection(r, state.http.max_json_body_bytes))?;
    let request: UploadRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("expected {{\"sizeBytes\": n, \"contentType\": \"image/…\"}}: {e}"),
        )
    })?;
    let max_bytes = state.app.policy.max_input_bytes;
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
    let url = state.app.staging.presign_put(&put).await?;
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

/// `PUT /staging/{key}?expires&size&sig`: the local stand-in for a presigned S3 PUT. The
/// signature is the authorisation and binds the `Content-Type` and the exact size; the
/// body is streamed and refused past that size.
pub async fn put_staged_original(
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
        && state.app.url_signer.verify(&put, &params.sig);
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
    match state.app.blobs.get(&put.key, 0).await {
        Ok(Some(_)) | Err(StoreError::TooLarge { .. }) => return Err(used()),
        Ok(None) => {}
        Err(error) => return Err(error.into()),
    }
    if state
        .app
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
        .app
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
pub async fn post_upload_complete(
    State(state): State<AppState>,
    caller: Caller,
    Path(upload_id): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| body_rejection(r, state.http.max_json_body_bytes))?;
    let upload_id = record::validate_id("uploadId", &upload_id)?;
    let fields = parse_completion_fields(&body)?;
    let key = staged_key(&caller.user_id, &upload_id);
    let idempotency_key = Some(format!("upload:{upload_id}"));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let Some(expires_at) = upload_url_expiry(&upload_id) else {
        return Err(upload_not_found());
    };
    if expires_at.saturating_add(grace_seconds(&state)) < now {
        // Too late to complete: the original goes; a completed upload still replays.
        state.app.blobs.delete(&key).await?;
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
    let bytes = match state
        .app
        .blobs
        .get(&key, state.app.policy.max_input_bytes)
        .await
    {
        Ok(Some(bytes)) => bytes,
        // Already completed (the staged original is removed then)? Replay the result.
        Ok(None) => return replay_completed(&state, &caller, &upload_id).await,
        Err(error @ StoreError::TooLarge { .. }) => {
            state.app.blobs.delete(&key).await?;
            return Err(error.into());
        }
        Err(error) => return Err(error.into()),
    };
    let result =
        upload::create_once(&state.app, &caller.user_id, idempotency_key, bytes, fields).await;
    if let Err(error) = state.app.blobs.delete(&key).await {
        tracing::error!(key = %key, error = %error, "could not remove staged original");
    }
    let created = result?;
    Ok(created_response(&created.record, created.replayed))
}

async fn replay_completed(
    state: &AppState,
    caller: &Caller,
    upload_id: &str,
) -> Result<Response, ApiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let key = format!("upload:{upload_id}");
    match state
        .app
        .metadata
        .find_idempotency(&caller.user_id, &key, now)
        .await?
    {
        Some(Reservation::Completed { response, .. }) => {
            let record = upload::recorded_result(&response)?;
            Ok(created_response(&record, true))
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

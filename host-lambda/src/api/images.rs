//! `/images` handlers. Decisions live in `record`, `upload` and the core; these only move
//! bytes between HTTP and the ports.

use axum::Json;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::requests::{
    ListParams, body_rejection, expected_version, idempotency_key, if_match_any,
    multipart_rejection, parse_patch, query_rejection, read_upload_form,
};
use crate::auth::Caller;
use crate::record::{self, ImageRecord};
use crate::store::ListQuery;
use crate::upload;

/// `POST /images` (multipart: `file`, `albumId`, `title`, `tags`), with an optional
/// `Idempotency-Key`: a retry with the same key and user returns the first result and
/// creates nothing new.
pub async fn post_image(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let (bytes, fields) = read_upload_form(&state, multipart.map_err(multipart_rejection)?).await?;
    let created =
        upload::create_once(&state.app, &caller.user_id, idempotency_key, bytes, fields).await?;
    Ok(created_response(&created.record, created.replayed))
}

pub(super) fn created_response(record: &ImageRecord, replayed: bool) -> Response {
    let mut response = (
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/images/{}", record.id)),
            (header::ETAG, version_etag(record)),
        ],
        Json(record),
    )
        .into_response();
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            header::HeaderValue::from_static("true"),
        );
    }
    response
}

/// The record's version as an HTTP entity tag (what `If-Match` compares against).
pub(super) fn version_etag(record: &ImageRecord) -> String {
    format!("\"{}\"", record.version)
}

/// The caller's own record, or 404 / 403.
async fn owned_record(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<ImageRecord, ApiError> {
    let record = state
        .app
        .metadata
        .get(id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    owned(record, caller)
}

/// The record if the caller may see it (its owner, or a service): else 403.
pub(super) fn owned(record: ImageRecord, caller: &Caller) -> Result<ImageRecord, ApiError> {
    if record.user_id != caller.user_id && !caller.is_service {
        return Err(ApiError::forbidden());
    }
    Ok(record)
}

/// `GET /images/{id}`.
pub async fn get_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = owned_record(&state, &caller, &id).await?;
    Ok(([(header::ETAG, version_etag(&record))], Json(record)).into_response())
}

/// `GET /images?limit=20&cursor=…&albumId=…`: the caller's images, newest first.
pub async fn list_images(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(query_rejection)?;
    let (limit, album_id, after) = params.validated(&state.app.cursors, &caller)?;
    // One extra row tells whether another page exists.
    let items = state
        .app
        .metadata
        .list(ListQuery {
            user_id: &caller.user_id,
            album_id: album_id.as_deref(),
            after,
            limit: limit + 1,
        })
        .await?;
    Ok(Json(page(
        &state,
        &caller,
        album_id.as_deref(),
        items,
        limit,
    )))
}

/// A listing page from up to `limit + 1` items (the extra one says another page exists):
/// `{items, nextCursor}`, the cursor signed for this user and album.
pub(super) fn page(
    state: &AppState,
    caller: &Caller,
    album_id: Option<&str>,
    mut items: Vec<ImageRecord>,
    limit: usize,
) -> Value {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| {
            let position = crate::store::ListPosition {
                uploaded_at: last.uploaded_at.clone(),
                id: last.id.clone(),
            };
            state
                .app
                .cursors
                .encode(&position, &caller.user_id, album_id)
        })
    } else {
        None
    };
    json!({ "items": items, "nextCursor": next_cursor })
}

/// `PATCH /images/{id}`: `title`, `tags`, `albumId`; the current `version` in the body or
/// in `If-Match` (`If-Match: *` matches whatever version is current, RFC 9110 13.1.1).
pub async fn patch_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| body_rejection(r, state.http.max_json_body_bytes))?;
    let (edit, body_version) = parse_patch(&body)?;
    let any_version = if_match_any(&headers);
    let expected = if any_version {
        body_version
    } else {
        Some(expected_version(body_version, &headers)?)
    };
    let current = owned_record(&state, &caller, &id).await?;
    let expected = expected.unwrap_or(current.version);
    if current.version != expected {
        return Err(crate::store::StoreError::VersionConflict {
            current: current.version,
        }
        .into());
    }
    let next = current.edited(&edit, &record::now());
    state.app.metadata.update(&next, expected).await?;
    Ok(([(header::ETAG, version_etag(&next))], Json(next)).into_response())
}

/// `DELETE /images/{id}`: the record first (so the image disappears at once), then both
/// objects. An object that can't be removed is logged, not returned: it is unreachable.
pub async fn delete_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let record = owned_record(&state, &caller, &id).await?;
    state.app.metadata.delete(&record.id).await?;
    upload::remove_objects(&state.app, &record).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /health`: the process is up and both stores answer.
pub async fn get_health(State(state): State<AppState>) -> Response {
    let within = state.app.limits.health_timeout;
    let (blobs, metadata) = tokio::join!(
        probe(within, state.app.blobs.ping()),
        probe(within, state.app.metadata.ping())
    );
    let healthy = blobs == "ok" && metadata == "ok";
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "blobStore": blobs,
        "metadataStore": metadata,
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// A store's health, bounded: a hung store is reported as `timeout` rather than hanging
/// the probe.
pub(super) async fn probe(
    within: std::time::Duration,
    ping: impl std::future::Future<Output = Result<(), crate::store::StoreError>>,
) -> &'static str {
    match tokio::time::timeout(within, ping).await {
        Ok(Ok(())) => "ok",
        Ok(Err(_)) => "unavailable",
        Err(_) => "timeout",
    }
}

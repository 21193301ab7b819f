//! The legacy gallery's API (`/gallery/images…`, the seeds' "main API"), with the same
//! JSON and status codes as the Image Service API, so a client can switch without
//! noticing. Writes go to PostgreSQL first (its failure fails the request), with an outbox
//! entry when dual-write is on, then are mirrored; reads follow the rollout flags, falling
//! back to PostgreSQL on timeout, error or a missing record (`migrate::gallery`'s
//! `routed_read`). `/dual-write/…` reports.

use axum::Json;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::images::{owned, page, probe, version_etag};
use super::requests::{ListParams, expected_version, if_match_any, parse_patch, read_upload_form};
use crate::auth::Caller;
use crate::migrate::gallery::{Gallery, routed_read};
use crate::migrate::legacy::LegacyPosition;
use crate::migrate::mapping::{compare, record_of, row_of};
use crate::record::ImageRecord;
use crate::store::{ListQuery, StoreError};
use crate::upload;

fn configured_gallery(state: &AppState) -> Result<&Gallery, ApiError> {
    state.app.gallery.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "gallery_not_configured",
            "no legacy gallery database is configured (IMGSVC_LEGACY_DATABASE_URL)",
        )
    })
}

/// `POST /gallery/images`: processed and stored like `POST /images`, recorded in PostgreSQL.
pub async fn post_gallery_image(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let gallery = configured_gallery(&state)?;
    let flags = gallery.flags.current();
    let (bytes, fields) = read_upload_form(&state, multipart).await?;
    let (full, processed) = upload::prepare(&state.app, &caller.user_id, bytes, fields).await?;
    let row = row_of(&full)?;
    upload::put_objects(&state.app, &full, processed).await?;
    let entry = match gallery.legacy.insert(&row, flags.dual_write).await {
        Ok(entry) => entry,
        Err(error) => {
            upload::remove_objects(&state.app, &full).await;
            return Err(error.into());
        }
    };
    if let Some(entry) = entry {
        gallery
            .mirror
            .mirror_now(&entry, flags.read_timeout, flags.breaker())
            .await;
    }
    let record = record_of(&row, &state.app.public_base_url);
    tracing::info!(imageId = %record.id, userId = %record.user_id, dualWrite = flags.dual_write, "gallery image uploaded");
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/gallery/images/{}", record.id)),
            (header::ETAG, version_etag(&record)),
        ],
        Json(record),
    )
        .into_response())
}

/// `GET /gallery/images/{id}`.
pub async fn get_gallery_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let gallery = configured_gallery(&state)?;
    let flags = gallery.flags.current();
    let base = state.app.public_base_url.clone();
    let record = routed_read(
        gallery,
        &flags,
        &caller.user_id,
        "get",
        state.app.metadata.get(&id),
        async {
            Ok(gallery
                .legacy
                .get(&id)
                .await?
                .map(|row| record_of(&row, &base)))
        },
        |a: &ImageRecord, b: &ImageRecord| row_of(a).is_ok_and(|row| compare(&row, b).is_empty()),
    )
    .await?
    .ok_or_else(ApiError::not_found)?;
    let record = owned(record, &caller)?;
    Ok(([(header::ETAG, version_etag(&record))], Json(record)).into_response())
}

/// `GET /gallery/images?limit&cursor&albumId`: newest first; cursors work on both paths
/// (`uploadedAt` of a migrated record is the row's `created_at`).
pub async fn list_gallery_images(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let gallery = configured_gallery(&state)?;
    let flags = gallery.flags.current();
    let (limit, album_id, after) = params.validated(&state.app.cursors, &caller)?;
    let base = state.app.public_base_url.clone();
    let legacy_after = match &after {
        Some(position) => Some(LegacyPosition {
            created_at: time::OffsetDateTime::parse(
                &position.uploaded_at,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| ApiError::bad_request("invalid_cursor", "the cursor is not valid"))?,
            id: position.id.clone(),
        }),
        None => None,
    };
    let image_service = async {
        let items = state
            .app
            .metadata
            .list(ListQuery {
                user_id: &caller.user_id,
                album_id: album_id.as_deref(),
                after: after.clone(),
                limit: limit + 1,
            })
            .await?;
        // An empty page from the Image Service may mean "not migrated yet": fall back.
        Ok((!items.is_empty()).then_some(items))
    };
    let legacy = async {
        let rows = gallery
            .legacy
            .list(
                &caller.user_id,
                album_id.as_deref(),
                legacy_after.as_ref(),
                limit + 1,
            )
            .await?;
        Ok(Some(
            rows.iter()
                .map(|row| record_of(row, &base))
                .collect::<Vec<_>>(),
        ))
    };
    let same = |a: &Vec<ImageRecord>, b: &Vec<ImageRecord>| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(a, b)| row_of(a).is_ok_and(|row| compare(&row, b).is_empty()))
    };
    let items = routed_read(
        gallery,
        &flags,
        &caller.user_id,
        "list",
        image_service,
        legacy,
        same,
    )
    .await?
    .unwrap_or_default();
    Ok(Json(page(
        &state,
        &caller,
        album_id.as_deref(),
        items,
        limit,
    )))
}

/// `PATCH /gallery/images/{id}`: versioned like `PATCH /images/{id}`, on PostgreSQL.
pub async fn patch_gallery_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let gallery = configured_gallery(&state)?;
    let flags = gallery.flags.current();
    let (edit, body_version) = parse_patch(&body)?;
    // `If-Match: *` matches whatever version is current (RFC 9110 13.1.1), as on `/images`.
    let expected = if if_match_any(&headers) {
        body_version
    } else {
        Some(expected_version(body_version, &headers)?)
    };
    let row = gallery
        .legacy
        .get(&id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let current = owned(record_of(&row, &state.app.public_base_url), &caller)?;
    let expected = expected.unwrap_or(current.version);
    if current.version != expected {
        return Err(StoreError::VersionConflict {
            current: current.version,
        }
        .into());
    }
    let next = current.edited(&edit, &crate::record::now());
    let expected = i64::try_from(expected).map_err(|_| StoreError::NotFound)?;
    let entry = gallery
        .legacy
        .update(&row_of(&next)?, expected, flags.dual_write)
        .await?;
    if let Some(entry) = entry {
        gallery
            .mirror
            .mirror_now(&entry, flags.read_timeout, flags.breaker())
            .await;
    }
    Ok(([(header::ETAG, version_etag(&next))], Json(next)).into_response())
}

/// `DELETE /gallery/images/{id}`: the row (and its mirror), then both objects.
pub async fn delete_gallery_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let gallery = configured_gallery(&state)?;
    let flags = gallery.flags.current();
    let row = gallery
        .legacy
        .get(&id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let record = owned(record_of(&row, &state.app.public_base_url), &caller)?;
    let entry = gallery.legacy.delete(&record.id, flags.dual_write).await?;
    if let Some(entry) = entry {
        gallery
            .mirror
            .mirror_now(&entry, flags.read_timeout, flags.breaker())
            .await;
    }
    upload::remove_objects(&state.app, &record).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /dual-write/status`: flags, outbox depth and counters.
pub async fn get_dual_write_status(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let gallery = configured_gallery(&state)?;
    let depth = gallery.legacy.outbox_depth().await?;
    let (waiting, next_attempt_at) = gallery.legacy.waiting_mirrors().await?;
    Ok(Json(json!({
        "flags": gallery.flags.current(),
        "outboxDepth": depth,
        "outboxWaiting": waiting,
        "nextAttemptAt": next_attempt_at.map(crate::record::iso8601),
        "breaker": gallery.mirror.breaker.status(),
        "counters": gallery.metrics.counts(),
    })))
}

/// `GET /dual-write/health`: both sides answer (each within the health timeout; a hung one
/// is reported as `timeout`).
pub async fn get_dual_write_health(State(state): State<AppState>) -> Result<Response, ApiError> {
    let gallery = configured_gallery(&state)?;
    let within = state.app.limits.health_timeout;
    let (legacy, target) = tokio::join!(
        probe(within, gallery.legacy.ping()),
        probe(within, state.app.metadata.ping())
    );
    let ok = legacy == "ok" && target == "ok";
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((
        code,
        Json(json!({
            "status": if ok { "ok" } else { "degraded" },
            "legacy": legacy,
            "imageService": target,
        })),
    )
        .into_response())
}

/// `GET /dual-write/metrics`: Prometheus text format.
pub async fn get_dual_write_metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let gallery = configured_gallery(&state)?;
    gallery
        .metrics
        .breaker_state
        .set(gallery.mirror.breaker.state_code());
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gallery.metrics.prometheus(),
    )
        .into_response())
}

//! The legacy gallery's API (`/gallery/images…`, the seeds' "main API"), with the same
//! JSON and status codes as the Image Service API, so a client can switch without
//! noticing. Writes go to PostgreSQL first (its failure fails the request), with an outbox
//! entry when dual-write is on, then are mirrored; reads follow the rollout flags, falling
//! back to PostgreSQL on timeout, error or a missing record. `/dual-write/…` reports.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::images::{ListParams, owned, parse_patch, read_upload_form, version_etag};
use crate::auth::Caller;
use crate::migrate::breaker::Permit;
use crate::migrate::flags::{FlagSource, Flags};
use crate::migrate::legacy::{LegacyPosition, LegacyStore};
use crate::migrate::mapping::{compare, record_of, row_of};
use crate::migrate::metrics::MigrationMetrics;
use crate::migrate::mirror::Mirror;
use crate::record::ImageRecord;
use crate::store::{ListQuery, StoreError};
use crate::upload;

/// The migration's moving parts, present when a legacy database is configured.
pub struct Gallery {
    pub legacy: Arc<dyn LegacyStore>,
    pub mirror: Arc<Mirror>,
    pub flags: Arc<dyn FlagSource>,
    pub metrics: Arc<MigrationMetrics>,
}

fn gallery(state: &AppState) -> Result<&Gallery, ApiError> {
    state.gallery.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "gallery_not_configured",
            "no legacy gallery database is configured (IMGSVC_LEGACY_DATABASE_URL)",
        )
    })
}

/// `POST /gallery/images`: processed and stored like `POST /images`, recorded in PostgreSQL.
pub async fn upload_image(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let gallery = gallery(&state)?;
    let flags = gallery.flags.current();
    let (bytes, fields) = read_upload_form(&state, multipart).await?;
    let (full, processed) = upload::prepare(&state, &caller.user_id, bytes, fields).await?;
    let row = row_of(&full)?;
    upload::put_objects(&state, &full, processed).await?;
    let entry = match gallery.legacy.insert(&row, flags.dual_write).await {
        Ok(entry) => entry,
        Err(error) => {
            upload::remove_objects(&state, &full).await;
            return Err(error.into());
        }
    };
    if let Some(entry) = entry {
        gallery
            .mirror
            .mirror_now(&entry, flags.read_timeout, flags.breaker())
            .await;
    }
    let record = record_of(&row, &state.public_base_url);
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

/// Why the Image Service gave no answer to a routed read.
enum Unanswered {
    Timeout,
    BreakerOpen,
}

/// Read from the Image Service when the flags route this user there (with the timeout),
/// else — or on timeout, error, or a missing answer — from PostgreSQL. Shadow mode reads
/// both, serves the legacy answer and counts differences.
async fn routed_read<T, FI, FL>(
    gallery: &Gallery,
    flags: &Flags,
    caller: &Caller,
    operation: &'static str,
    image_service: FI,
    legacy: FL,
    same: impl Fn(&T, &T) -> bool,
) -> Result<Option<T>, ApiError>
where
    FI: std::future::Future<Output = Result<Option<T>, StoreError>>,
    FL: std::future::Future<Output = Result<Option<T>, StoreError>>,
{
    let routed = flags.reads_from_image_service(&caller.user_id);
    let breaker = &gallery.mirror.breaker;
    if routed || flags.shadow_reads {
        let started = Instant::now();
        // While the breaker is open the Image Service is not asked: the read falls back at
        // once instead of paying the timeout.
        let result = if breaker.permit(started, flags.breaker()) == Permit::Skip {
            Err(Unanswered::BreakerOpen)
        } else {
            let result = tokio::time::timeout(flags.read_timeout, image_service)
                .await
                .map_err(|_| Unanswered::Timeout);
            match &result {
                Ok(Ok(_)) => breaker.succeeded(),
                Ok(Err(_)) | Err(_) => gallery.mirror.breaker_failed(flags.breaker()),
            }
            result
        };
        let seconds = started.elapsed().as_secs_f64();
        let reason = match &result {
            Err(Unanswered::BreakerOpen) => "breaker_open",
            Err(Unanswered::Timeout) => "timeout",
            Ok(Err(_)) => "error",
            Ok(Ok(None)) => "missing",
            Ok(Ok(Some(_))) => "ok",
        };
        gallery.metrics.read("image_service", reason, seconds);
        if routed {
            tracing::info!(userId = %caller.user_id, operation, route = "image_service", outcome = reason, latencyMs = seconds * 1000.0, "read routed");
            if let Ok(Ok(Some(found))) = result {
                return Ok(Some(found));
            }
            tracing::warn!(userId = %caller.user_id, operation, reason, "Image Service read failed, falling back to PostgreSQL");
        } else {
            let started = Instant::now();
            let legacy_answer = legacy.await?;
            gallery
                .metrics
                .read("legacy", "ok", started.elapsed().as_secs_f64());
            let agrees = match (&legacy_answer, &result) {
                (Some(a), Ok(Ok(Some(b)))) => same(a, b),
                (None, Ok(Ok(None))) => true,
                _ => false,
            };
            if !agrees {
                gallery.metrics.shadow_mismatches.inc();
                tracing::warn!(userId = %caller.user_id, operation, imageServiceOutcome = reason, "shadow read mismatch");
            }
            return Ok(legacy_answer);
        }
    }
    let started = Instant::now();
    let answer = legacy.await?;
    gallery
        .metrics
        .read("legacy", "ok", started.elapsed().as_secs_f64());
    if !routed {
        tracing::debug!(userId = %caller.user_id, operation, route = "legacy", "read routed");
    }
    Ok(answer)
}

/// `GET /gallery/images/{id}`.
pub async fn get_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let gallery = gallery(&state)?;
    let flags = gallery.flags.current();
    let base = state.public_base_url.clone();
    let record = routed_read(
        gallery,
        &flags,
        &caller,
        "get",
        state.metadata.get(&id),
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
pub async fn list_images(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let gallery = gallery(&state)?;
    let flags = gallery.flags.current();
    let (limit, album_id, after) = params.validated(&state, &caller)?;
    let base = state.public_base_url.clone();
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
        &caller,
        "list",
        image_service,
        legacy,
        same,
    )
    .await?
    .unwrap_or_default();
    Ok(Json(super::images::page(
        &state,
        &caller,
        album_id.as_deref(),
        items,
        limit,
    )))
}

/// `PATCH /gallery/images/{id}`: versioned like `PATCH /images/{id}`, on PostgreSQL.
pub async fn update_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let gallery = gallery(&state)?;
    let flags = gallery.flags.current();
    let (edit, body_version) = parse_patch(&body)?;
    // `If-Match: *` matches whatever version is current (RFC 9110 13.1.1), as on `/images`.
    let expected = if super::images::if_match_any(&headers) {
        body_version
    } else {
        Some(super::images::expected_version(body_version, &headers)?)
    };
    let row = gallery
        .legacy
        .get(&id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let current = owned(record_of(&row, &state.public_base_url), &caller)?;
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
pub async fn delete_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let gallery = gallery(&state)?;
    let flags = gallery.flags.current();
    let row = gallery
        .legacy
        .get(&id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let record = owned(record_of(&row, &state.public_base_url), &caller)?;
    let entry = gallery.legacy.delete(&record.id, flags.dual_write).await?;
    if let Some(entry) = entry {
        gallery
            .mirror
            .mirror_now(&entry, flags.read_timeout, flags.breaker())
            .await;
    }
    upload::remove_objects(&state, &record).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /dual-write/status`: flags, outbox depth and counters.
pub async fn status(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let gallery = gallery(&state)?;
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
pub async fn health(State(state): State<AppState>) -> Result<Response, ApiError> {
    let gallery = gallery(&state)?;
    let within = state.limits.health_timeout;
    let (legacy, target) = tokio::join!(
        super::images::probe(within, gallery.legacy.ping()),
        super::images::probe(within, state.metadata.ping())
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
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let gallery = gallery(&state)?;
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

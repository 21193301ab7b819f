//! `/images` handlers. Decisions live in `record`, `upload` and the core; these only move
//! bytes between HTTP and the ports.

use axum::Json;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::auth::Caller;
use crate::record::{self, Editable, ImageRecord};
use crate::store::{ListQuery, Reservation};
use crate::upload::{self, UploadFields};

/// Longest accepted text field in an upload form (title, tags, albumId), in bytes.
const MAX_TEXT_FIELD_BYTES: usize = 8 * 1024;

/// Bounds on an upload form's parts, checked as they arrive so a hostile form is refused
/// before the rest of it is read (`IMGSVC_MAX_FORM_PARTS`, `IMGSVC_MAX_FORM_TEXT_BYTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormLimits {
    /// Most parts: the default 128 fits the file, title, albumId and one `tags` field per
    /// tag entry (`record::MAX_TAG_ENTRIES`).
    pub parts: usize,
    /// Most bytes of text fields, all together (each is also at most 8 KiB).
    pub text_bytes: usize,
}

impl FormLimits {
    pub const DEFAULT_PARTS: usize = 128;
    pub const DEFAULT_TEXT_BYTES: usize = 64 * 1024;
}

impl Default for FormLimits {
    fn default() -> Self {
        FormLimits {
            parts: Self::DEFAULT_PARTS,
            text_bytes: Self::DEFAULT_TEXT_BYTES,
        }
    }
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large_body();
    }
    ApiError::from_body_error(&error, || {
        ApiError::bad_request("invalid_multipart", error.body_text())
    })
}

/// A multipart body axum could not even start on (no boundary, not multipart at all).
pub(super) fn multipart_rejection(
    rejection: axum::extract::multipart::MultipartRejection,
) -> ApiError {
    ApiError::bad_request("invalid_multipart", rejection.body_text())
}

/// A query string that does not parse into the operation's parameters.
pub(super) fn query_rejection(rejection: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

/// A JSON request body that could not be read: over `limit` (413), or broken.
pub(super) fn body_rejection(
    rejection: axum::extract::rejection::BytesRejection,
    limit: usize,
) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than the {limit}-byte limit"),
        );
    }
    ApiError::bad_request("invalid_body", rejection.body_text())
}

pub(super) fn too_large_body() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "the upload is larger than the 10 MiB limit",
    )
}

/// How long an `Idempotency-Key` is remembered.
const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 60 * 60;

/// `POST /images` (multipart: `file`, `albumId`, `title`, `tags`), with an optional
/// `Idempotency-Key`: a retry with the same key and user returns the first result and
/// creates nothing new.
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let (bytes, fields) = read_upload_form(&state, multipart.map_err(multipart_rejection)?).await?;
    create_with_idempotency(&state, &caller, idempotency_key, bytes, fields).await
}

/// Create an image, once per `(user, idempotency key)` when a key is given: a repeat with
/// the same upload replays the first result; another upload under the key is refused.
pub(super) async fn create_with_idempotency(
    state: &AppState,
    caller: &Caller,
    idempotency_key: Option<String>,
    bytes: Bytes,
    fields: UploadFields,
) -> Result<Response, ApiError> {
    let Some(key) = idempotency_key else {
        let record = upload::create(state, &caller.user_id, bytes, fields).await?;
        return Ok(created(&record, false));
    };

    let fingerprint = upload_fingerprint(&bytes, &fields);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let reservation = state
        .metadata
        .reserve_idempotency(
            &caller.user_id,
            &key,
            &fingerprint,
            now,
            now + IDEMPOTENCY_TTL_SECONDS,
            now.saturating_add(
                i64::try_from(state.limits.idempotency_lease.as_secs()).unwrap_or(i64::MAX),
            ),
        )
        .await?;
    match reservation {
        Reservation::Reserved => {}
        Reservation::Completed {
            fingerprint: first,
            response,
        } if first == fingerprint => {
            let record: ImageRecord = serde_json::from_str(&response).map_err(|e| {
                crate::store::StoreError::Unavailable(format!("bad idempotency record: {e}"))
            })?;
            return Ok(created(&record, true));
        }
        Reservation::InProgress { fingerprint: first } if first == fingerprint => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still being processed; retry shortly",
            ));
        }
        Reservation::Completed { .. } | Reservation::InProgress { .. } => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different upload",
            ));
        }
    }
    match upload::create(state, &caller.user_id, bytes, fields).await {
        Ok(record) => {
            let response = serde_json::to_string(&record).unwrap_or_default();
            if let Err(error) = state
                .metadata
                .complete_idempotency(&caller.user_id, &key, &response)
                .await
            {
                // The image exists; only the replay is lost. Don't fail the upload for it.
                tracing::error!(image_id = %record.id, error = %error, "could not record idempotency result");
            }
            Ok(created(&record, false))
        }
        Err(error) => {
            if let Err(release) = state
                .metadata
                .release_idempotency(&caller.user_id, &key)
                .await
            {
                tracing::error!(error = %release, "could not release idempotency key");
            }
            Err(error)
        }
    }
}

pub(super) fn created(record: &ImageRecord, replayed: bool) -> Response {
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

/// The `Idempotency-Key` header: 1–255 visible ASCII characters, if present.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1-255 visible ASCII characters",
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// What makes two uploads "the same request": the file and every field.
fn upload_fingerprint(bytes: &[u8], fields: &UploadFields) -> String {
    let described = serde_json::json!([
        record::etag_of(bytes),
        fields.album_id,
        fields.title,
        fields.tags,
        fields.original_filename,
    ]);
    record::etag_of(described.to_string().as_bytes())
}

/// Read the multipart form, streaming the file with a running count so an oversized upload
/// is refused the moment it passes the limit.
pub(super) async fn read_upload_form(
    state: &AppState,
    multipart: Multipart,
) -> Result<(Bytes, UploadFields), ApiError> {
    let limit = usize::try_from(state.policy.max_input_bytes).unwrap_or(usize::MAX);
    read_upload_fields(multipart, limit, &state.form_limits).await
}

/// The fields of an upload form (`file`, `albumId`, `title`, `tags`), validated, with the
/// file refused once it passes `limit` bytes. Every repeated part is bounded as it arrives
/// (`form`'s parts and text bytes, `record::MAX_TAG_ENTRIES` tag entries), so a hostile form
/// is refused before the rest of it is read. No state: the fuzz target drives it directly.
pub async fn read_upload_fields(
    mut multipart: Multipart,
    limit: usize,
    form: &FormLimits,
) -> Result<(Bytes, UploadFields), ApiError> {
    let mut file: Option<Bytes> = None;
    let mut fields = UploadFields::default();
    let mut raw_tags: Vec<String> = Vec::new();
    let mut parts = 0usize;
    let mut text_bytes = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        parts += 1;
        if parts > form.parts {
            return Err(ApiError::bad_request(
                "invalid_multipart",
                format!("the form has more than {} parts", form.parts),
            ));
        }
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            if file.is_some() {
                return Err(ApiError::bad_request(
                    "invalid_multipart",
                    "more than one file",
                ));
            }
            fields.original_filename = field.file_name().map(|n| n.chars().take(255).collect());
            let mut buffer = BytesMut::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if buffer.len() + chunk.len() > limit {
                    return Err(too_large_body());
                }
                buffer.extend_from_slice(&chunk);
            }
            file = Some(buffer.freeze());
            continue;
        }
        let mut text = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if text.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
                return Err(ApiError::bad_request(
                    "invalid_field",
                    format!("{name} is too long"),
                ));
            }
            text_bytes += chunk.len();
            if text_bytes > form.text_bytes {
                return Err(ApiError::bad_request(
                    "invalid_field",
                    format!(
                        "the form's text fields are longer than {} bytes",
                        form.text_bytes
                    ),
                ));
            }
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(text)
            .map_err(|_| ApiError::bad_request("invalid_field", format!("{name} is not UTF-8")))?;
        match name.as_str() {
            "albumId" if !text.trim().is_empty() => {
                fields.album_id = Some(record::validate_id("albumId", text.trim())?);
            }
            "albumId" => {}
            "title" => fields.title = record::validate_title(&text)?,
            // Repeated `tags` fields, or one comma-separated field.
            "tags" => {
                raw_tags.extend(text.split(',').map(str::to_owned));
                if raw_tags.len() > record::MAX_TAG_ENTRIES {
                    return Err(record::FieldError::TooManyTags {
                        max: record::MAX_TAGS,
                    }
                    .into());
                }
            }
            other => {
                return Err(ApiError::bad_request(
                    "invalid_field",
                    format!("unknown field {other:?}"),
                ));
            }
        }
    }
    fields.tags = record::validate_tags(raw_tags.iter().map(String::as_str))?;
    let bytes =
        file.ok_or_else(|| ApiError::bad_request("missing_file", "the form has no `file` field"))?;
    Ok((bytes, fields))
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
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = owned_record(&state, &caller, &id).await?;
    Ok(([(header::ETAG, version_etag(&record))], Json(record)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListParams {
    limit: Option<String>,
    cursor: Option<String>,
    album_id: Option<String>,
}

impl ListParams {
    /// The limit (1..100, default 20), the album, and where the page starts (from a cursor
    /// that must belong to this user and album).
    pub(super) fn validated(
        &self,
        state: &AppState,
        caller: &Caller,
    ) -> Result<(usize, Option<String>, Option<crate::store::ListPosition>), ApiError> {
        let limit = match self.limit.as_deref() {
            None => 20,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| ApiError::bad_request("invalid_limit", "limit must be 1..100"))?,
        };
        let album_id = self
            .album_id
            .as_deref()
            .map(|a| record::validate_id("albumId", a))
            .transpose()?;
        let after = match self.cursor.as_deref() {
            None => None,
            Some(cursor) => Some(
                state
                    .cursors
                    .decode(cursor, &caller.user_id, album_id.as_deref())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_cursor",
                            "the cursor is not valid for this listing",
                        )
                    })?,
            ),
        };
        Ok((limit, album_id, after))
    }
}

/// `GET /images?limit=20&cursor=…&albumId=…`: the caller's images, newest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(query_rejection)?;
    let (limit, album_id, after) = params.validated(&state, &caller)?;
    // One extra row tells whether another page exists.
    let items = state
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
            state.cursors.encode(&position, &caller.user_id, album_id)
        })
    } else {
        None
    };
    json!({ "items": items, "nextCursor": next_cursor })
}

/// `PATCH /images/{id}`: `title`, `tags`, `albumId`; the current `version` in the body or
/// in `If-Match` (`If-Match: *` matches whatever version is current, RFC 9110 13.1.1).
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| body_rejection(r, state.max_json_body_bytes))?;
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
    state.metadata.update(&next, expected).await?;
    Ok(([(header::ETAG, version_etag(&next))], Json(next)).into_response())
}

/// `If-Match: *`: any current representation matches.
pub fn if_match_any(headers: &HeaderMap) -> bool {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "*")
}

/// The version a PATCH expects: from the body or `If-Match` (which must agree); 428 when
/// neither is given.
pub fn expected_version(body_version: Option<u64>, headers: &HeaderMap) -> Result<u64, ApiError> {
    let header_version = headers
        .get(header::IF_MATCH)
        .map(|v| {
            v.to_str()
                .ok()
                .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_version", "If-Match must be a version number")
                })
        })
        .transpose()?;
    match (body_version, header_version) {
        (Some(a), Some(b)) if a != b => Err(ApiError::bad_request(
            "invalid_version",
            "body version and If-Match disagree",
        )),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => Err(ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "version_required",
            "send the current version in the body or in If-Match",
        )),
    }
}

/// A PATCH body: a JSON object with only `title`, `tags`, `albumId` and `version`; `null`
/// clears `title` and `albumId`.
pub fn parse_patch(body: &[u8]) -> Result<(Editable, Option<u64>), ApiError> {
    let invalid = |detail: &str| ApiError::bad_request("invalid_body", detail.to_owned());
    let value: Value =
        serde_json::from_slice(body).map_err(|e| invalid(&format!("invalid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| invalid("the body must be a JSON object"))?;
    let mut edit = Editable::default();
    let mut version = None;
    for (key, value) in object {
        match (key.as_str(), value) {
            ("title", Value::Null) => edit.title = Some(None),
            ("title", Value::String(s)) => edit.title = Some(record::validate_title(s)?),
            ("albumId", Value::Null) => edit.album_id = Some(None),
            ("albumId", Value::String(s)) => {
                edit.album_id = Some(Some(record::validate_id("albumId", s)?));
            }
            ("tags", Value::Array(items)) => {
                let tags: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                let tags = tags.ok_or_else(|| invalid("tags must be strings"))?;
                edit.tags = Some(record::validate_tags(tags)?);
            }
            ("version", Value::Number(n)) => {
                version = Some(
                    n.as_u64()
                        .ok_or_else(|| invalid("version must be a positive integer"))?,
                );
            }
            (key @ ("title" | "albumId" | "tags" | "version"), _) => {
                return Err(invalid(&format!("{key} has the wrong type")));
            }
            (other, _) => return Err(invalid(&format!("unknown field {other:?}"))),
        }
    }
    Ok((edit, version))
}

/// `DELETE /images/{id}`: the record first (so the image disappears at once), then both
/// objects. An object that can't be removed is logged, not returned: it is unreachable.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let record = owned_record(&state, &caller, &id).await?;
    state.metadata.delete(&record.id).await?;
    upload::remove_objects(&state, &record).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /health`: the process is up and both stores answer.
pub async fn health(State(state): State<AppState>) -> Response {
    let within = state.limits.health_timeout;
    let (blobs, metadata) = tokio::join!(
        probe(within, state.blobs.ping()),
        probe(within, state.metadata.ping())
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

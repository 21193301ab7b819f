//! Request parsing: the upload form, query strings, JSON bodies, `If-Match` and
//! `Idempotency-Key`, each validated into the service's types or refused as an `ApiError`.
//! Also the framework's own rejections turned into problems with our codes.

use axum::extract::Multipart;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::auth::Caller;
use crate::cursor::CursorCodec;
use crate::record::{self, Editable};
use crate::upload::UploadFields;

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
pub fn multipart_rejection(rejection: axum::extract::multipart::MultipartRejection) -> ApiError {
    ApiError::bad_request("invalid_multipart", rejection.body_text())
}

/// A query string that does not parse into the operation's parameters.
pub fn query_rejection(rejection: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

/// A JSON request body that could not be read: over `limit` (413), or broken.
pub fn body_rejection(
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

pub fn too_large_body() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "the upload is larger than the 10 MiB limit",
    )
}

/// The `Idempotency-Key` header: 1–255 visible ASCII characters, if present.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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

/// Read the multipart form, streaming the file with a running count so an oversized upload
/// is refused the moment it passes the limit.
pub async fn read_upload_form(
    state: &AppState,
    multipart: Multipart,
) -> Result<(Bytes, UploadFields), ApiError> {
    let limit = usize::try_from(state.app.policy.max_input_bytes).unwrap_or(usize::MAX);
    read_upload_fields(multipart, limit, &state.http.form_limits).await
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
    pub fn validated(
        &self,
        cursors: &CursorCodec,
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
                cursors
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

/// The body of `POST /uploads`: what the client will PUT, so the URL can be bound to it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadRequest {
    pub size_bytes: u64,
    pub content_type: String,
}

/// RFC 9110 token characters (what a media subtype may contain).
pub fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[derive(Deserialize)]
pub struct SignedParams {
    pub expires: i64,
    pub size: u64,
    pub sig: String,
}

/// The optional JSON body of `POST /uploads/{id}/complete`: `albumId`, `title`, `tags`.
pub fn parse_completion_fields(body: &[u8]) -> Result<UploadFields, ApiError> {
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

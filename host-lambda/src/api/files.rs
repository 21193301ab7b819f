//! `GET /files/{key}`: the local stand-in for the CDN, so record URLs work offline.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::record::etag_of;
use crate::store::StoreError;
use crate::upload::{CACHE_CONTROL, OUTPUT_CONTENT_TYPE};

/// S3's longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Whether `key` can name a stored image: under `images/`, at most 1024 bytes, of
/// non-empty segments that are not `.` or `..`, with no control characters. Anything else
/// is simply not there (404): a request must not be able to make the store fail, log an
/// ERROR or raise the 5xx alarms.
pub fn is_image_key(key: &str) -> bool {
    key.starts_with("images/")
        && key.len() <= MAX_KEY_BYTES
        && !key.chars().any(char::is_control)
        && key
            .split('/')
            .all(|segment| !matches!(segment, "" | "." | ".."))
}

pub async fn get_file(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !is_image_key(&key) {
        return Err(ApiError::not_found());
    }
    let bytes = match state.app.blobs.get(&key, u64::MAX).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) | Err(StoreError::InvalidKey(_)) => return Err(ApiError::not_found()),
        Err(error) => return Err(error.into()),
    };
    let etag = etag_of(&bytes);
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, CACHE_CONTROL.to_owned()),
    ];
    if cached {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    Ok((
        common,
        [(header::CONTENT_TYPE, OUTPUT_CONTENT_TYPE)],
        Body::from(bytes),
    )
        .into_response())
}

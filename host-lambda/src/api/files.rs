//! `GET /files/{key}`: the local stand-in for the CDN, so record URLs work offline.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::record::etag_of;
use crate::upload::{CACHE_CONTROL, OUTPUT_CONTENT_TYPE};

pub async fn get_file(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !key.starts_with("images/") {
        return Err(ApiError::not_found());
    }
    let bytes = state
        .blobs
        .get(&key, u64::MAX)
        .await?
        .ok_or_else(ApiError::not_found)?;
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

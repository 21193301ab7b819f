//! Every API error as RFC 9457 `application/problem+json`, with a stable `code`; the one
//! place the service's errors (the core's, the sandbox's, the stores', the upload's, auth,
//! fields) get their HTTP status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use imgsvc_core::ProcessError;
use imgsvc_sandbox::SandboxError;
use serde_json::{Map, Value, json};

use crate::auth::AuthError;
use crate::processor::ProcessFailure;
use crate::record::FieldError;
use crate::store::StoreError;
use crate::upload::UploadError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Extension members (e.g. `currentVersion` on a conflict).
    pub extra: Map<String, Value>,
    /// Seconds a client should wait before retrying (`Retry-After`), when there is a limit
    /// it ran into.
    pub retry_after_seconds: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            extra: Map::new(),
            retry_after_seconds: None,
        }
    }

    #[must_use]
    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_owned(), value);
        self
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such image")
    }

    pub fn forbidden() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this image belongs to another user",
        )
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 503 `busy`: the server is at a limit; the response says when to retry.
    pub fn busy(detail: impl Into<String>) -> ApiError {
        ApiError {
            retry_after_seconds: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", detail)
        }
    }

    /// A request body that could not be read: 408 when the body deadlines cut it off
    /// (`edge::BodyTimeout`), else `otherwise`.
    pub fn from_body_error(
        error: &(dyn std::error::Error + 'static),
        otherwise: impl FnOnce() -> ApiError,
    ) -> ApiError {
        match super::edge::BodyTimeout::in_chain(error) {
            Some(timeout) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                timeout.to_string(),
            ),
            None => otherwise(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("urn:imgsvc:problem:{}", self.code)),
        );
        body.insert(
            "title".into(),
            json!(self.status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("code".into(), json!(self.code));
        body.insert("detail".into(), json!(self.detail));
        body.extend(self.extra);
        let mut response = (self.status, Value::Object(body).to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The code of an error the framework answered by itself (a bare or `text/plain` response:
/// no route, a method the route lacks, an extractor's rejection).
fn bare_error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        404 => "route_not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        411 => "length_required",
        413 => "too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "too_many_requests",
        431 => "headers_too_large",
        503 => "unavailable",
        _ if status.is_server_error() => "internal",
        _ => "error",
    }
}

/// Most of a bare error's text kept as the problem's `detail`.
const BARE_DETAIL_BYTES: usize = 1024;

/// `map_response` middleware: an error response that is not already a problem (no
/// `Content-Type`, or `text/plain` — what axum and tower-http answer with) becomes one,
/// keeping its status, its other headers (`Allow`, `Retry-After`, …) and its text as the
/// `detail`. Responses with a body of their own (JSON `/health`, the preview's HTML) stay.
pub async fn bare_errors_as_problems(response: Response) -> Response {
    let status = response.status();
    let bare = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|value| value.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !bare {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, BARE_DETAIL_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut problem = ApiError::new(status, bare_error_code(status), detail).into_response();
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    problem.headers_mut().extend(parts.headers);
    problem
}

/// The status and code of a refusal by its code (the core's `ProcessError::code()`, as the
/// native core and the sandboxed guest both report it): bombs are 422, formats 415,
/// not-images and broken files 400; unknown codes are our failure.
fn refusal_status(code: &str) -> (StatusCode, &'static str) {
    match code {
        "empty_input" => (StatusCode::BAD_REQUEST, "empty_input"),
        "corrupt_image" => (StatusCode::BAD_REQUEST, "corrupt_image"),
        "not_an_image" => (StatusCode::BAD_REQUEST, "not_an_image"),
        "too_large" => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        "unsupported_format" => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_format"),
        "unsupported_feature" => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_feature"),
        "dimensions_too_large" => (StatusCode::UNPROCESSABLE_ENTITY, "dimensions_too_large"),
        "too_many_pixels" => (StatusCode::UNPROCESSABLE_ENTITY, "too_many_pixels"),
        "too_many_frames" => (StatusCode::UNPROCESSABLE_ENTITY, "too_many_frames"),
        "memory_limit" => (StatusCode::UNPROCESSABLE_ENTITY, "memory_limit"),
        "encode_failed" => (StatusCode::INTERNAL_SERVER_ERROR, "encode_failed"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// The core's refusals, through the one table; a format that is no image at all is
/// `not_an_image` (400), and every format refusal names what was detected.
impl From<ProcessError> for ApiError {
    fn from(error: ProcessError) -> ApiError {
        let code = match &error {
            ProcessError::UnsupportedFormat { detected } if !detected.is_image() => "not_an_image",
            other => other.code(),
        };
        let (status, code) = refusal_status(code);
        let mut api = ApiError::new(status, code, error.to_string());
        if let ProcessError::UnsupportedFormat { detected } = &error {
            api = api.with("detectedFormat", json!(detected.name()));
        }
        api
    }
}

/// Refusals as the native core's; the sandbox's memory cap is the core's `memory_limit`
/// (422), its deadline `processing_timeout` (422: this input takes too long, retrying won't
/// help); anything else is our failure (500, logged).
impl From<ProcessFailure> for ApiError {
    fn from(failure: ProcessFailure) -> ApiError {
        match failure {
            ProcessFailure::Core(error) => ApiError::from(error),
            ProcessFailure::Sandbox(SandboxError::Refused { code, message }) => {
                let (status, stable) = refusal_status(&code);
                if status.is_server_error() {
                    tracing::error!(code = %code, message = %message, "the sandboxed core failed");
                }
                ApiError::new(status, stable, message)
            }
            ProcessFailure::Sandbox(error @ SandboxError::MemoryLimit { .. }) => {
                tracing::warn!(error = %error, "sandbox memory cap reached");
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "memory_limit",
                    error.to_string(),
                )
            }
            ProcessFailure::Sandbox(
                error @ (SandboxError::Timeout { .. } | SandboxError::OutOfFuel),
            ) => {
                tracing::warn!(error = %error, "sandbox deadline reached");
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "processing_timeout",
                    error.to_string(),
                )
            }
            ProcessFailure::Sandbox(error) => {
                tracing::error!(error = %error, "the sandbox failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "image processing failed",
                )
            }
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(error: UploadError) -> ApiError {
        match error {
            UploadError::Process(failure) => ApiError::from(failure),
            UploadError::Store(error) => ApiError::from(error),
            UploadError::Busy => ApiError::busy(error.to_string()),
            UploadError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                error.to_string(),
            ),
            UploadError::TaskFailed => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            ),
            UploadError::IdempotencyInProgress => ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_in_progress",
                error.to_string(),
            ),
            UploadError::IdempotencyKeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                error.to_string(),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::VersionConflict { current } => ApiError::new(
                StatusCode::CONFLICT,
                "version_conflict",
                format!("the image was changed: its current version is {current}"),
            )
            .with("currentVersion", json!(current)),
            StoreError::AlreadyExists => ApiError::new(
                StatusCode::CONFLICT,
                "already_exists",
                "an image with this id already exists",
            ),
            StoreError::TooLarge { limit } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the upload is larger than the {limit}-byte limit"),
            ),
            StoreError::InvalidKey(_) | StoreError::Unavailable(_) => {
                tracing::error!(error = %error, "store failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "storage is temporarily unavailable; retry later",
                )
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        match error {
            AuthError::NotDelegable => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", error.to_string())
            }
            AuthError::BadDelegate(detail) => ApiError::bad_request("invalid_field", detail),
            AuthError::Missing | AuthError::Invalid(_) | AuthError::KeySet(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", error.to_string())
            }
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> ApiError {
        ApiError::bad_request("invalid_field", error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use imgsvc_core::Format;

    use super::*;

    #[test]
    fn guest_refusals_get_the_native_status_and_code() {
        let errors = [
            ProcessError::EmptyInput,
            ProcessError::TooLarge {
                actual: 11,
                limit: 10,
            },
            ProcessError::DimensionsTooLarge {
                width: 1,
                height: 1,
                limit: 1,
            },
            ProcessError::TooManyPixels {
                width: 1,
                height: 1,
                pixels: 1,
                limit: 1,
            },
            ProcessError::TooManyFrames { limit: 1 },
            ProcessError::MemoryLimit { limit: 1 },
            ProcessError::CorruptImage {
                format: Format::Png,
                reason: "x".into(),
            },
            ProcessError::UnsupportedFeature {
                format: Format::Jpeg,
                reason: "x".into(),
            },
            ProcessError::EncodeFailed { reason: "x".into() },
            ProcessError::Internal {
                stage: "x",
                reason: "x".into(),
            },
        ];
        for error in errors {
            let native = ApiError::from(error.clone());
            let sandboxed = ApiError::from(ProcessFailure::Sandbox(SandboxError::Refused {
                code: error.code().into(),
                message: error.to_string(),
            }));
            assert_eq!(
                (native.status, native.code, native.detail),
                (sandboxed.status, sandboxed.code, sandboxed.detail),
                "{error:?}"
            );
        }
    }

    #[test]
    fn caps_are_typed_and_internal_failures_are_500() {
        let memory = ApiError::from(ProcessFailure::Sandbox(SandboxError::MemoryLimit {
            limit_bytes: 1 << 20,
        }));
        assert_eq!(
            (memory.status, memory.code),
            (StatusCode::UNPROCESSABLE_ENTITY, "memory_limit")
        );
        let timeout = ApiError::from(ProcessFailure::Sandbox(SandboxError::Timeout {
            after: Duration::from_millis(5),
        }));
        assert_eq!(
            (timeout.status, timeout.code),
            (StatusCode::UNPROCESSABLE_ENTITY, "processing_timeout")
        );
        let trap = ApiError::from(ProcessFailure::Sandbox(SandboxError::Trap("boom".into())));
        assert_eq!(
            (trap.status, trap.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
    }
}

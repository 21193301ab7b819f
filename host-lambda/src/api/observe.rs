//! Per-request observability: one structured log line per request (operation, status,
//! latency, request id — never tokens or bodies), counted in the service's telemetry
//! (`crate::telemetry`: `GET /metrics`, EMF in Lambda).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;

/// The middleware: time the request, then count and log it under its route's operation
/// (`GET /images/{id}`, never the concrete id).
pub async fn observe_request(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let operation = format!(
        "{} {}",
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str)
    );
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(client_request_id)
        .or_else(|| lambda_request_id(&request))
        .unwrap_or_else(|| ulid::Ulid::new().to_string());
    // Every log line of the request carries its id and operation; the caller's user id is
    // recorded into the span once authentication knows it (see `Caller`'s extractor).
    let span = tracing::info_span!(
        "request",
        requestId = %request_id,
        operation = %operation,
        userId = tracing::field::Empty
    );
    let response = next.run(request).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state
        .app
        .telemetry
        .record_request(&operation, status, seconds);
    let outcome = if status < 400 {
        "ok"
    } else if status < 500 {
        "refused"
    } else {
        "error"
    };
    span.in_scope(|| {
        tracing::info!(status, outcome, latencyMs = seconds * 1000.0, "request");
    });
    response
}

/// Longest client `X-Request-Id` kept.
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// A client's `X-Request-Id`, if it is one: 1–128 characters of `[A-Za-z0-9._:-]` (ULIDs,
/// UUIDs, AWS and most tracing ids). Anything else is dropped and a fresh id minted, so a
/// client can't write 4 KB, quotes or line breaks into every log line of its request.
pub fn client_request_id(value: &axum::http::HeaderValue) -> Option<String> {
    let id = value.as_bytes();
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
    ((1..=MAX_REQUEST_ID_CHARS).contains(&id.len()) && id.iter().all(allowed))
        .then(|| String::from_utf8_lossy(id).into_owned())
}

fn lambda_request_id(request: &Request) -> Option<String> {
    use lambda_http::RequestExt;
    request
        .extensions()
        .lambda_context_ref()
        .map(|context| context.request_id.clone())
}

/// `GET /metrics`: the request metrics and, when the gallery is configured, the migration's.
pub async fn get_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = state.app.telemetry.prometheus();
    if let Some(gallery) = &state.app.gallery {
        // Both renderings end with `# EOF`; keep one, at the end.
        if let Some(stripped) = body.strip_suffix("# EOF\n") {
            body = stripped.to_owned();
        }
        body.push_str(&gallery.metrics.prometheus());
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

//! The HTTP API: one axum `Router` for the local server and Lambda alike, over the service
//! (`App`). Handlers (`images`, `uploads`, `files`, `gallery`, `preview`, `observe`) only
//! move bytes between HTTP and the use cases; `requests` parses, `error` maps every error
//! to its status, `edge` is the local server's connection loop and `lambda` the Lambda
//! runtime's adapter.

pub mod edge;
pub mod error;
mod files;
mod gallery;
mod images;
pub mod lambda;
mod observe;
mod preview;
pub mod requests;
mod uploads;
// The request parsers, for the fuzz targets (fuzz/).
pub use requests::{
    FormLimits, expected_version, parse_completion_fields, parse_patch, read_upload_fields,
};

use std::path::PathBuf;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::routing::get;

use crate::app::App;
use crate::auth::{Authenticator, Caller};
use error::ApiError;

/// Room for multipart framing (part headers, boundaries) around a maximal file and the
/// form's text (`FormLimits::text_bytes`).
const MULTIPART_FRAMING: usize = 64 * 1024;

/// Default largest JSON request body (`PATCH`, `POST /uploads`, `complete`;
/// `IMGSVC_MAX_JSON_BODY_BYTES`). The largest valid one — a 200-character title, 20 tags of
/// 50 characters and an album id, every character `\u`-escaped — is under 8 KiB; axum's
/// default would be 2 MB.
pub const DEFAULT_MAX_JSON_BODY_BYTES: usize = 64 * 1024;

/// What the HTTP layer alone decides: who the caller is behind API Gateway, how large
/// request bodies and forms may be, where the preview page is.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Behind API Gateway's JWT authorizer: take the caller from the authorizer's verified
    /// claims when present (a bearer token is still accepted otherwise).
    pub trust_authorizer: bool,
    /// Largest JSON request body, in bytes (`IMGSVC_MAX_JSON_BODY_BYTES`).
    pub max_json_body_bytes: usize,
    /// Bounds on upload forms' parts (`IMGSVC_MAX_FORM_PARTS`, `IMGSVC_MAX_FORM_TEXT_BYTES`).
    pub form_limits: FormLimits,
    /// The browser preview page's files (`IMGSVC_PREVIEW_DIR`).
    pub preview_dir: PathBuf,
}

impl Default for HttpSettings {
    /// The `serve` defaults.
    fn default() -> HttpSettings {
        HttpSettings {
            trust_authorizer: false,
            max_json_body_bytes: DEFAULT_MAX_JSON_BODY_BYTES,
            form_limits: FormLimits::default(),
            preview_dir: preview::default_preview_dir(),
        }
    }
}

/// Everything a handler can reach: the service and the HTTP settings.
#[derive(Clone)]
pub struct AppState {
    pub app: App,
    pub http: HttpSettings,
}

impl AppState {
    pub fn new(app: App, http: HttpSettings) -> AppState {
        AppState { app, http }
    }
}

/// The local server: the router (with tower-http's request traces) behind the connection
/// edge on `listener`, until `shutdown` resolves.
pub async fn serve_local(
    listener: tokio::net::TcpListener,
    app: App,
    http: HttpSettings,
    connections: edge::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let router =
        router(AppState::new(app, http)).layer(tower_http::trace::TraceLayer::new_for_http());
    edge::serve(listener, router, connections, shutdown).await;
}

/// The same router as a Lambda function, until the runtime stops it.
pub async fn serve_lambda(app: App, http: HttpSettings) -> Result<(), lambda_http::Error> {
    lambda::run(router(AppState::new(app, http))).await
}

pub fn router(state: AppState) -> Router {
    let upload_limit = usize::try_from(state.app.policy.max_input_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_FRAMING)
        .saturating_add(state.http.form_limits.text_bytes);
    let json_limit = DefaultBodyLimit::max(state.http.max_json_body_bytes);
    // The handlers that take an upload's bytes (or, for `complete`, read them from
    // staging) are admitted only while fewer than `App::uploads` are in flight.
    let admitted = axum::middleware::from_fn_with_state(state.clone(), admit_upload);
    Router::new()
        .route(
            "/images",
            get(images::list_images)
                .post(images::post_image.layer(admitted.clone()))
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/images/{id}",
            get(images::get_image)
                .patch(images::patch_image)
                .delete(images::delete_image)
                .layer(json_limit),
        )
        .route(
            "/uploads",
            axum::routing::post(uploads::post_upload).layer(json_limit),
        )
        .route(
            "/uploads/{id}/complete",
            axum::routing::post(uploads::post_upload_complete.layer(admitted.clone()))
                .layer(json_limit),
        )
        .route(
            "/staging/{*key}",
            axum::routing::put(uploads::put_staged_original.layer(admitted.clone())),
        )
        .route("/files/{*key}", get(files::get_file))
        .route(
            "/gallery/images",
            get(gallery::list_gallery_images)
                .post(gallery::post_gallery_image.layer(admitted))
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/gallery/images/{id}",
            get(gallery::get_gallery_image)
                .patch(gallery::patch_gallery_image)
                .delete(gallery::delete_gallery_image)
                .layer(json_limit),
        )
        .route("/dual-write/status", get(gallery::get_dual_write_status))
        .route("/dual-write/health", get(gallery::get_dual_write_health))
        .route("/dual-write/metrics", get(gallery::get_dual_write_metrics))
        .route("/metrics", get(observe::get_metrics))
        .route("/health", get(images::get_health))
        .route("/openapi.json", get(get_openapi))
        .route("/", get(preview::get_preview_page))
        .route("/{file}", get(preview::get_preview_asset))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe_request,
        ))
        // Outermost: whatever the framework answers by itself (no route, wrong method, a
        // body or query its extractors refuse) is a problem+json like every other error.
        .layer(axum::middleware::map_response(
            error::bare_errors_as_problems,
        ))
        .with_state(state)
}

/// Take an upload only while fewer than `App::uploads` are in flight; past that, 503
/// with `Retry-After` before a byte of its body is read, so a burst can't buffer
/// unbounded memory while uploads wait for a processing slot.
async fn admit_upload(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(_admitted) = state.app.uploads.clone().try_acquire_owned() else {
        return ApiError::busy("too many uploads in progress; retry shortly").into_response();
    };
    next.run(request).await
}

/// The API described: `GET /openapi.json`.
async fn get_openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("../../openapi.json"),
    )
}

/// The caller from a request's headers: `authorized` (the trusted authorizer's claims) or
/// else the `Authorization: Bearer …` token, then `X-On-Behalf-Of` applied.
pub fn header_caller(
    auth: &Authenticator,
    headers: &axum::http::HeaderMap,
    authorized: Option<Caller>,
) -> Result<Caller, ApiError> {
    let caller = match authorized {
        Some(caller) => caller,
        None => {
            let header = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            auth.verify(header)?
        }
    };
    match headers.get(crate::auth::ON_BEHALF_OF) {
        None => Ok(caller),
        Some(value) => {
            let user_id = value.to_str().map_err(|_| {
                ApiError::bad_request("invalid_field", "X-On-Behalf-Of must be a user id")
            })?;
            Ok(caller.on_behalf_of(user_id)?)
        }
    }
}

/// The authenticated caller, from `Authorization: Bearer …` (or the trusted authorizer's
/// claims), acting for the user in `X-On-Behalf-Of` when it is a service.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authorized = if state.http.trust_authorizer {
            // The authorizer's claims are the identity provider's: its service scope counts
            // only when the deployment says so, as for its JWKS-signed tokens.
            lambda::authorizer_caller(&parts.extensions).map(|caller| Caller {
                is_service: caller.is_service && state.app.auth.trusts_jwks_service_scope(),
                ..caller
            })
        } else {
            None
        };
        let caller = header_caller(&state.app.auth, &parts.headers, authorized)?;
        // The request's span (see `observe::observe_request`) logs who it was for.
        tracing::Span::current().record("userId", caller.user_id.as_str());
        Ok(caller)
    }
}

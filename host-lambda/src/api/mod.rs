//! The HTTP API: one axum `Router` for the local server and Lambda alike.

pub mod cursor;
pub mod error;
mod files;
pub mod gallery;
mod images;
// The request parsers, for the fuzz targets (fuzz/).
pub use images::{FormLimits, expected_version, parse_patch, read_upload_fields};
pub mod observe;
mod preview;
pub mod uploads;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::routing::get;
use imgsvc_core::Policy;

use crate::auth::{Authenticator, Caller};
use crate::store::{BlobStore, MetadataStore, UploadStaging};
use cursor::CursorCodec;
use error::ApiError;

/// Room for multipart framing (part headers, boundaries) around a maximal file and the
/// form's text (`FormLimits::text_bytes`).
const MULTIPART_FRAMING: usize = 64 * 1024;

/// Default largest JSON request body (`PATCH`, `POST /uploads`, `complete`;
/// `IMGSVC_MAX_JSON_BODY_BYTES`). The largest valid one — a 200-character title, 20 tags of
/// 50 characters and an album id, every character `\u`-escaped — is under 8 KiB; axum's
/// default would be 2 MB.
pub const DEFAULT_MAX_JSON_BODY_BYTES: usize = 64 * 1024;

/// Everything a handler can reach: ports, never adapters.
#[derive(Clone)]
pub struct AppState {
    pub blobs: Arc<dyn BlobStore>,
    pub metadata: Arc<dyn MetadataStore>,
    pub auth: Arc<Authenticator>,
    pub cursors: Arc<CursorCodec>,
    pub policy: Policy,
    /// Base of `imageUrl`/`thumbnailUrl`: the CDN in AWS, `{server}/files` locally.
    pub public_base_url: String,
    /// Recorded as `s3Bucket` (the bucket name in AWS, `local` on the embedded store).
    pub bucket_label: String,
    /// Behind API Gateway's JWT authorizer: take the caller from the authorizer's verified
    /// claims when present (a bearer token is still accepted otherwise).
    pub trust_authorizer: bool,
    /// Where two-step uploads send originals.
    pub staging: Arc<dyn UploadStaging>,
    /// Checks the local server's own signed upload URLs (`PUT /staging/…`).
    pub url_signer: Arc<uploads::UrlSigner>,
    /// The legacy gallery and the migration, when a legacy database is configured.
    pub gallery: Option<Arc<gallery::Gallery>>,
    /// Request counters and histograms (`/metrics`), EMF in Lambda.
    pub observe: Arc<observe::Observability>,
    /// Image decodes allowed to run at once (see `upload::process`).
    pub processing: Arc<tokio::sync::Semaphore>,
    /// Upload requests taken at once (their bodies buffered, waiting for or holding a
    /// `processing` permit); past it, uploads get 503 before their body is read.
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// Where the core runs: in process, or in the wasmtime sandbox (`IMGSVC_SANDBOX`).
    pub processor: Arc<crate::processor::Processor>,
    /// Deadlines the handlers apply (docs/configuration.md, "Limits and timeouts").
    pub limits: Limits,
    /// Largest JSON request body, in bytes (`IMGSVC_MAX_JSON_BODY_BYTES`).
    pub max_json_body_bytes: usize,
    /// Bounds on upload forms' parts (`IMGSVC_MAX_FORM_PARTS`, `IMGSVC_MAX_FORM_TEXT_BYTES`).
    pub form_limits: FormLimits,
}

/// Deadlines the handlers apply; `serve` sets them from its settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long `/health` waits for each store before reporting it `timeout`.
    pub health_timeout: std::time::Duration,
    /// How long an upload holds its `Idempotency-Key` before a retry may take the key over
    /// (its holder presumed dead): longer than any upload may take.
    pub idempotency_lease: std::time::Duration,
    /// How long after its URL expired a two-step upload may still be completed; past it
    /// its staged original is swept.
    pub upload_grace: std::time::Duration,
    /// Staged (not completed, not expired) two-step uploads a user may have open.
    pub max_open_uploads: usize,
    /// How old an image object with no record must be before the sweep removes it.
    pub orphan_grace: std::time::Duration,
    /// How long an upload waits for a processing slot before it is refused (503 `busy`):
    /// with the store timeouts this bounds an upload, which the idempotency lease must
    /// outlast.
    pub processing_queue_timeout: std::time::Duration,
}

impl Default for Limits {
    /// The `serve` defaults.
    fn default() -> Limits {
        Limits {
            health_timeout: std::time::Duration::from_secs(2),
            idempotency_lease: std::time::Duration::from_secs(300),
            upload_grace: std::time::Duration::from_secs(15 * 60),
            max_open_uploads: 20,
            orphan_grace: std::time::Duration::from_secs(3600),
            processing_queue_timeout: std::time::Duration::from_secs(60),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let upload_limit = usize::try_from(state.policy.max_input_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_FRAMING)
        .saturating_add(state.form_limits.text_bytes);
    let json_limit = DefaultBodyLimit::max(state.max_json_body_bytes);
    // The handlers that take an upload's bytes (or, for `complete`, read them from
    // staging) are admitted only while fewer than `state.uploads` are in flight.
    let admitted = axum::middleware::from_fn_with_state(state.clone(), admit_upload);
    Router::new()
        .route(
            "/images",
            get(images::list)
                .post(images::upload.layer(admitted.clone()))
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/images/{id}",
            get(images::get_one)
                .patch(images::update)
                .delete(images::delete)
                .layer(json_limit),
        )
        .route(
            "/uploads",
            axum::routing::post(uploads::create_upload).layer(json_limit),
        )
        .route(
            "/uploads/{id}/complete",
            axum::routing::post(uploads::complete_upload.layer(admitted.clone())).layer(json_limit),
        )
        .route(
            "/staging/{*key}",
            axum::routing::put(uploads::put_staged.layer(admitted.clone())),
        )
        .route("/files/{*key}", get(files::get_file))
        .route(
            "/gallery/images",
            get(gallery::list_images)
                .post(gallery::upload_image.layer(admitted))
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/gallery/images/{id}",
            get(gallery::get_image)
                .patch(gallery::update_image)
                .delete(gallery::delete_image)
                .layer(json_limit),
        )
        .route("/dual-write/status", get(gallery::status))
        .route("/dual-write/health", get(gallery::health))
        .route("/dual-write/metrics", get(gallery::metrics))
        .route("/metrics", get(observe::metrics))
        .route("/health", get(images::health))
        .route("/openapi.json", get(openapi))
        .route("/", get(preview::index))
        .route("/{file}", get(preview::asset))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        // Outermost: whatever the framework answers by itself (no route, wrong method, a
        // body or query its extractors refuse) is a problem+json like every other error.
        .layer(axum::middleware::map_response(
            error::bare_errors_as_problems,
        ))
        .with_state(state)
}

/// Take an upload only while fewer than `state.uploads` are in flight; past that, 503
/// with `Retry-After` before a byte of its body is read, so a burst can't buffer
/// unbounded memory while uploads wait for a processing slot.
async fn admit_upload(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(_admitted) = state.uploads.clone().try_acquire_owned() else {
        return ApiError::busy("too many uploads in progress; retry shortly").into_response();
    };
    next.run(request).await
}

/// The API described: `GET /openapi.json`.
async fn openapi() -> impl axum::response::IntoResponse {
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
        let authorized = if state.trust_authorizer {
            // The authorizer's claims are the identity provider's: its service scope counts
            // only when the deployment says so, as for its JWKS-signed tokens.
            crate::lambda::authorizer_caller(&parts.extensions).map(|caller| Caller {
                is_service: caller.is_service && state.auth.trusts_jwks_service_scope(),
                ..caller
            })
        } else {
            None
        };
        let caller = header_caller(&state.auth, &parts.headers, authorized)?;
        // The request's span (see `observe`) logs who it was for.
        tracing::Span::current().record("userId", caller.user_id.as_str());
        Ok(caller)
    }
}

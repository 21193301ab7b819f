//! The service itself, with no HTTP in sight: the ports it works on, the core's runner and
//! the limits the use cases apply. `wiring` builds one at start; the HTTP layer (`api`)
//! and the use cases (`upload`, the migration) only read it.

use std::sync::Arc;
use std::time::Duration;

use imgsvc_core::Policy;

use crate::auth::Authenticator;
use crate::cursor::CursorCodec;
use crate::migrate::gallery::Gallery;
use crate::processor::Processor;
use crate::store::local_staging::UrlSigner;
use crate::store::{BlobStore, MetadataStore, UploadStaging};
use crate::telemetry::Telemetry;

/// Everything a request can reach: ports, never adapters.
#[derive(Clone)]
pub struct App {
    pub blobs: Arc<dyn BlobStore>,
    pub metadata: Arc<dyn MetadataStore>,
    pub auth: Arc<Authenticator>,
    pub cursors: Arc<CursorCodec>,
    pub policy: Policy,
    /// Base of `imageUrl`/`thumbnailUrl`: the CDN in AWS, `{server}/files` locally.
    pub public_base_url: String,
    /// Recorded as `s3Bucket` (the bucket name in AWS, `local` on the embedded store).
    pub bucket_label: String,
    /// Where two-step uploads send originals.
    pub staging: Arc<dyn UploadStaging>,
    /// Checks the local server's own signed upload URLs (`PUT /staging/…`).
    pub url_signer: Arc<UrlSigner>,
    /// The legacy gallery and the migration, when a legacy database is configured.
    pub gallery: Option<Arc<Gallery>>,
    /// Request counters and histograms (`/metrics`), EMF in Lambda.
    pub telemetry: Arc<Telemetry>,
    /// Image decodes allowed to run at once (see `upload::process`).
    pub processing: Arc<tokio::sync::Semaphore>,
    /// Upload requests taken at once (their bodies buffered, waiting for or holding a
    /// `processing` permit); past it, uploads are refused before their body is read.
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// Where the core runs: in process, or in the wasmtime sandbox (`IMGSVC_SANDBOX`).
    pub processor: Arc<Processor>,
    /// Deadlines and bounds the use cases apply (docs/configuration.md, "Limits and
    /// timeouts").
    pub limits: Limits,
}

/// Upload requests in flight at once (`IMGSVC_MAX_INFLIGHT_UPLOADS`): ~320 MiB of buffered
/// 10 MiB bodies at most.
pub const DEFAULT_MAX_INFLIGHT_UPLOADS: usize = 32;

/// Deadlines and bounds of the service; `serve` sets them from its settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long `/health` waits for each store before reporting it `timeout`.
    pub health_timeout: Duration,
    /// How long an upload holds its `Idempotency-Key` before a retry may take the key over
    /// (its holder presumed dead): longer than any upload may take.
    pub idempotency_lease: Duration,
    /// How long after its URL expired a two-step upload may still be completed; past it
    /// its staged original is swept.
    pub upload_grace: Duration,
    /// Staged (not completed, not expired) two-step uploads a user may have open.
    pub max_open_uploads: usize,
    /// How old an image object with no record must be before the sweep removes it.
    pub orphan_grace: Duration,
    /// How long an upload waits for a processing slot before it is refused (503 `busy`):
    /// with the store timeouts this bounds an upload, which the idempotency lease must
    /// outlast.
    pub processing_queue_timeout: Duration,
}

impl Default for Limits {
    /// The `serve` defaults.
    fn default() -> Limits {
        Limits {
            health_timeout: Duration::from_secs(2),
            idempotency_lease: Duration::from_secs(300),
            upload_grace: Duration::from_secs(15 * 60),
            max_open_uploads: 20,
            orphan_grace: Duration::from_secs(3600),
            processing_queue_timeout: Duration::from_secs(60),
        }
    }
}

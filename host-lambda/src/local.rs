//! Wiring: the embedded defaults (filesystem objects and SQLite records under one data
//! directory) or S3 + DynamoDB, and the secret generated in the data dir once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::api::AppState;
use crate::api::cursor::CursorCodec;
use crate::api::uploads::{LocalStaging, UrlSigner};
use crate::auth::Authenticator;
use crate::store::dynamodb::DynamoMetadataStore;
use crate::store::fs::FsBlobStore;
use crate::store::s3::{S3BlobStore, S3Staging};
use crate::store::sqlite::SqliteMetadataStore;
use crate::store::{BlobStore, MetadataStore, UploadStaging};

/// Hex characters of a generated secret: 32 random bytes.
const SECRET_HEX_CHARS: usize = 64;

/// The local server's secret: `IMGSVC_JWT_SECRET` if set, else `{data_dir}/secret`,
/// generated (32 random bytes, hex, mode 0600) the first time. An existing file must hold
/// the generated form (at least 64 hex characters, i.e. 32 bytes of entropy): an empty or
/// short one — a write cut short, a hand edit — would let anyone sign service tokens, so
/// it refuses to start instead.
pub fn secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(secret) = std::env::var("IMGSVC_JWT_SECRET") {
        anyhow::ensure!(
            secret.len() >= 32,
            "IMGSVC_JWT_SECRET must be at least 32 characters"
        );
        return Ok(secret.into_bytes());
    }
    let path = data_dir.join("secret");
    match std::fs::read_to_string(&path) {
        Ok(existing) => {
            let existing = existing.trim();
            anyhow::ensure!(
                existing.len() >= SECRET_HEX_CHARS
                    && existing.bytes().all(|b| b.is_ascii_hexdigit()),
                "{} is not a generated secret (at least {SECRET_HEX_CHARS} hex characters): \
                 remove it to generate a new one (tokens signed with the old one stop working), \
                 or set IMGSVC_JWT_SECRET",
                path.display()
            );
            return Ok(existing.as_bytes().to_vec());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    create_private_dir(data_dir)?;
    let mut raw = [0u8; SECRET_HEX_CHARS / 2];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let written = write_private_with(&path, |file| {
        use std::io::Write;
        file.write_all(hex.as_bytes())
    });
    match written {
        Ok(()) => Ok(hex.into_bytes()),
        // Another process (`imgsvc token` beside a first `serve`) generated it meanwhile:
        // that one is the secret.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => secret(data_dir),
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

/// The data dir (and any missing parent) created private: 0700 on Unix. An existing
/// directory is left as the operator made it.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Write a new private file (0600 on Unix) whole or not at all: `write` fills a temporary
/// file beside it, which is synced, then linked to `path` — a rename that refuses to
/// replace an existing file — and its temporary name removed. A failed write (disk full)
/// never leaves a partial or empty file at `path`.
fn write_private_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let mut temporary_name = file_name.to_owned();
    temporary_name.push(format!(".tmp-{}", ulid::Ulid::new()));
    let temporary = path.with_file_name(temporary_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        write(&mut file)?;
        file.sync_all()
    });
    // A hard link fails if `path` exists (two first starts racing): the first secret wins
    // and nobody overwrites it.
    let placed = written.and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    placed?;
    if let Some(parent) = path.parent() {
        // The new name is durable once the directory is synced.
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// A key for one purpose, derived from the secret so purposes never share a key.
pub fn derive_key(secret: &[u8], purpose: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(purpose.as_bytes());
    hasher.update([0]);
    hasher.update(secret);
    hasher.finalize().to_vec()
}

pub fn authenticator(secret: &[u8]) -> Authenticator {
    Authenticator::hs256(&derive_key(secret, "jwt"))
}

/// Where objects and records live.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Files and SQLite under the data dir: the default, offline.
    Embedded,
    /// S3 and DynamoDB (or emulators at `AWS_ENDPOINT_URL`).
    Aws {
        bucket: String,
        table: String,
        /// Path-style S3 addressing, which local emulators need.
        force_path_style: bool,
        /// Base of `imageUrl`/`thumbnailUrl` (the CDN); objects are served from there.
        cdn_url: String,
    },
}

/// The app on embedded storage under `data_dir`, with URLs under `public_url`.
pub async fn state(data_dir: &Path, public_url: &str) -> anyhow::Result<AppState> {
    let aws = aws_sdk_config(&AwsTimeouts::default()).await;
    state_with(data_dir, public_url, &Storage::Embedded, &aws).await
}

/// Deadlines of every S3 and DynamoDB call, so a hung store fails requests instead of
/// holding them forever.
#[derive(Debug, Clone, Copy)]
pub struct AwsTimeouts {
    /// To open a connection.
    pub connect: Duration,
    /// One attempt (a retry starts a new one).
    pub attempt: Duration,
    /// The whole call, retries included.
    pub operation: Duration,
}

impl Default for AwsTimeouts {
    /// The `serve` defaults (docs/configuration.md, "Limits and timeouts").
    fn default() -> AwsTimeouts {
        AwsTimeouts {
            connect: Duration::from_secs(3),
            attempt: Duration::from_secs(10),
            operation: Duration::from_secs(30),
        }
    }
}

/// The AWS SDK settings from the environment (region, credentials, endpoint), with
/// `timeouts` on every call of every client built from them.
pub async fn aws_sdk_config(timeouts: &AwsTimeouts) -> aws_config::SdkConfig {
    let timeout_config = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeouts.connect)
        .operation_attempt_timeout(timeouts.attempt)
        .operation_timeout(timeouts.operation)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeout_config)
        .load()
        .await
}

/// Upload requests in flight at once (`IMGSVC_MAX_INFLIGHT_UPLOADS`): ~320 MiB of buffered
/// 10 MiB bodies at most.
pub const DEFAULT_MAX_INFLIGHT_UPLOADS: usize = 32;

/// The storage-dependent parts of the state.
struct Adapters {
    blobs: Arc<dyn BlobStore>,
    metadata: Arc<dyn MetadataStore>,
    staging: Arc<dyn UploadStaging>,
    public_base_url: String,
    bucket_label: String,
}

/// The app on the chosen storage. `aws` configures the SDK clients when AWS is chosen
/// (region, credentials, endpoint).
pub async fn state_with(
    data_dir: &Path,
    public_url: &str,
    storage: &Storage,
    aws: &aws_config::SdkConfig,
) -> anyhow::Result<AppState> {
    let secret = secret(data_dir)?;
    let url_signer = Arc::new(UrlSigner::new(&derive_key(&secret, "upload-url")));
    let adapters = match storage {
        Storage::Embedded => {
            // Records, objects and the secret are nobody else's business.
            create_private_dir(data_dir)?;
            let objects: PathBuf = data_dir.join("objects");
            let blobs = FsBlobStore::open(&objects)
                .await
                .with_context(|| format!("opening {}", objects.display()))?;
            let database = data_dir.join("imgsvc.sqlite");
            let metadata = SqliteMetadataStore::open(&database)
                .await
                .with_context(|| format!("opening {}", database.display()))?;
            let staging = LocalStaging {
                base_url: public_url.trim_end_matches('/').to_owned(),
                signer: url_signer.clone(),
            };
            Adapters {
                blobs: Arc::new(blobs),
                metadata: Arc::new(metadata),
                staging: Arc::new(staging),
                public_base_url: format!("{}/files", public_url.trim_end_matches('/')),
                bucket_label: "local".to_owned(),
            }
        }
        Storage::Aws {
            bucket,
            table,
            force_path_style,
            cdn_url,
        } => {
            let s3_config = aws_sdk_s3::config::Builder::from(aws)
                .force_path_style(*force_path_style)
                .build();
            let s3 = aws_sdk_s3::Client::from_conf(s3_config);
            let dynamodb = aws_sdk_dynamodb::Client::new(aws);
            Adapters {
                blobs: Arc::new(S3BlobStore::new(s3.clone(), bucket.clone())),
                metadata: Arc::new(DynamoMetadataStore::new(dynamodb, table.clone())),
                staging: Arc::new(S3Staging::new(s3, bucket.clone())),
                public_base_url: cdn_url.trim_end_matches('/').to_owned(),
                bucket_label: bucket.clone(),
            }
        }
    };
    Ok(AppState {
        blobs: adapters.blobs,
        metadata: adapters.metadata,
        auth: Arc::new(authenticator(&secret)),
        cursors: Arc::new(CursorCodec::new(&derive_key(&secret, "cursor"))),
        policy: imgsvc_core::Policy::default(),
        public_base_url: adapters.public_base_url,
        bucket_label: adapters.bucket_label,
        trust_authorizer: false,
        staging: adapters.staging,
        url_signer,
        gallery: None,
        observe: Arc::new(crate::api::observe::Observability::new(
            crate::lambda::is_lambda(),
        )),
        processing: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        )),
        uploads: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_INFLIGHT_UPLOADS)),
        processor: Arc::new(crate::processor::Processor::Native),
        limits: crate::api::Limits::default(),
        max_json_body_bytes: crate::api::DEFAULT_MAX_JSON_BODY_BYTES,
        form_limits: crate::api::FormLimits::default(),
    })
}

/// The legacy gallery on PostgreSQL at `database_url`, mirroring into `state`'s metadata
/// store, with flags from `flags`.
pub async fn gallery(
    state: &AppState,
    database_url: &str,
    flags: Arc<dyn crate::migrate::flags::FlagSource>,
) -> anyhow::Result<Arc<crate::api::gallery::Gallery>> {
    let legacy: Arc<dyn crate::migrate::legacy::LegacyStore> = Arc::new(
        crate::migrate::postgres::PgLegacyStore::connect(database_url)
            .await
            .context("connecting to the legacy PostgreSQL database")?,
    );
    let metrics = Arc::new(crate::migrate::metrics::MigrationMetrics::new(
        crate::lambda::is_lambda(),
    ));
    let mirror = Arc::new(crate::migrate::mirror::Mirror {
        legacy: legacy.clone(),
        target: state.metadata.clone(),
        public_base_url: state.public_base_url.clone(),
        metrics: metrics.clone(),
        breaker: Arc::default(),
    });
    Ok(Arc::new(crate::api::gallery::Gallery {
        legacy,
        mirror,
        flags,
        metrics,
    }))
}

/// `database_url` with a server-side `statement_timeout` (sent as a startup option), so a
/// runaway or blocked statement fails instead of holding a request or the drain forever.
/// A URL that already sets one is left as it is.
pub fn with_statement_timeout(database_url: &str, timeout: Duration) -> String {
    if database_url.contains("statement_timeout") {
        return database_url.to_owned();
    }
    let separator = if database_url.contains('?') { '&' } else { '?' };
    format!(
        "{database_url}{separator}options[statement_timeout]={}",
        timeout.as_millis()
    )
}

/// The migration flags: `IMGSVC_FLAGS_FILE` (re-read when it changes) if set, else the
/// process environment. Invalid values refuse to start.
pub fn flag_source() -> anyhow::Result<Arc<dyn crate::migrate::flags::FlagSource>> {
    use crate::migrate::flags::{FileFlags, StaticFlags};
    match std::env::var_os("IMGSVC_FLAGS_FILE") {
        Some(path) => Ok(Arc::new(
            FileFlags::open(PathBuf::from(path)).map_err(anyhow::Error::msg)?,
        )),
        None => Ok(Arc::new(StaticFlags::from_env()?)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_statement_timeout_is_added_to_the_database_url_unless_set() {
        let second = Duration::from_secs(1);
        assert_eq!(
            with_statement_timeout("postgres://db/app", second),
            "postgres://db/app?options[statement_timeout]=1000"
        );
        assert_eq!(
            with_statement_timeout("postgres://db/app?sslmode=require", second),
            "postgres://db/app?sslmode=require&options[statement_timeout]=1000"
        );
        let explicit = "postgres://db/app?options[statement_timeout]=5";
        assert_eq!(with_statement_timeout(explicit, second), explicit);
    }

    /// The real server applies it (IMGSVC_TEST_DATABASE_URL, as the migration tests).
    #[tokio::test]
    async fn postgres_connections_get_the_statement_timeout() {
        let url = std::env::var("IMGSVC_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let url = with_statement_timeout(&url, Duration::from_millis(1500));
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
            .expect("PostgreSQL not reachable (scripts/test starts it)");
        let shown: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(shown, "1500ms");
        let slow = sqlx::query("SELECT pg_sleep(3)").execute(&pool).await;
        assert!(slow.is_err(), "a 3 s statement outlived a 1.5 s timeout");
    }

    /// Issue 17 item 7: any existing `secret` file was used, trimmed, whatever its length (an
    /// empty one too): anyone could then sign service tokens.
    #[test]
    fn a_secret_file_not_in_the_generated_form_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let too_short = "ab".repeat(31);
        let not_hex = "g".repeat(64);
        for bad in ["", "\n", "short", too_short.as_str(), not_hex.as_str()] {
            std::fs::write(&path, bad).unwrap();
            assert!(secret(dir.path()).is_err(), "{bad:?} accepted");
        }
        let good = "0123456789abcdef".repeat(4);
        std::fs::write(&path, format!("{good}\n")).unwrap();
        assert_eq!(secret(dir.path()).unwrap(), good.as_bytes());
    }

    /// Issue 17 item 7: the secret file was created first and written after, so a failed
    /// write (disk full) left an empty secret behind.
    #[test]
    fn a_secret_is_written_whole_or_not_at_all() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let failed = write_private_with(&path, |file| {
            file.write_all(b"0123")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert!(!path.exists(), "a partial secret was left behind");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        // Generated: whole, in the generated form, and read back the same.
        let first = secret(dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert!(first.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(secret(dir.path()).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

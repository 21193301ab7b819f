//! The composition root: the one place adapters are chosen and the service is put
//! together, in one pass, from the settings — the embedded defaults (filesystem objects and
//! SQLite records under one data directory) or S3 + DynamoDB, the secret (generated in the
//! data dir once), the sandbox, the identity provider's keys, the legacy gallery. Each
//! command asks for what it needs: `serving_app` (serve), `stores` (sweep), `migration`
//! (migrate), `secret` (token).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::app::{App, DEFAULT_MAX_INFLIGHT_UPLOADS, Limits};
use crate::auth::Authenticator;
use crate::cursor::CursorCodec;
use crate::migrate::flags::{FileFlags, FlagSource, Flags, StaticFlags};
use crate::migrate::gallery::Gallery;
use crate::migrate::legacy::LegacyStore;
use crate::migrate::metrics::MigrationMetrics;
use crate::migrate::mirror::Mirror;
use crate::migrate::postgres::PgLegacyStore;
use crate::processor::Processor;
use crate::settings::{
    LegacySettings, LegacyStoreSettings, MigrateSettings, ServeSettings, StoreSettings,
};
use crate::store::aws::{AwsTimeouts, aws_sdk_config};
use crate::store::dynamodb::DynamoMetadataStore;
use crate::store::fs::FsBlobStore;
use crate::store::local_staging::{LocalStaging, UrlSigner};
use crate::store::s3::{S3BlobStore, S3Staging};
use crate::store::sqlite::SqliteMetadataStore;
use crate::store::{BlobStore, MetadataStore, UploadStaging};
use crate::telemetry::Telemetry;

/// Hex characters of a generated secret: 32 random bytes.
const SECRET_HEX_CHARS: usize = 64;

/// The local server's secret: `configured` (`IMGSVC_JWT_SECRET`) if set, else
/// `{data_dir}/secret`, generated (32 random bytes, hex, mode 0600) the first time. An
/// existing file must hold the generated form (at least 64 hex characters, i.e. 32 bytes
/// of entropy): an empty or short one — a write cut short, a hand edit — would let anyone
/// sign service tokens, so it refuses to start instead.
pub fn secret(data_dir: &Path, configured: Option<&str>) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = configured {
        anyhow::ensure!(
            secret.len() >= 32,
            "IMGSVC_JWT_SECRET must be at least 32 characters"
        );
        return Ok(secret.as_bytes().to_vec());
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
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => secret(data_dir, None),
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

/// The stores: where objects and records live, and the base of the URLs records carry.
pub struct Stores {
    pub blobs: Arc<dyn BlobStore>,
    pub metadata: Arc<dyn MetadataStore>,
    /// Base of `imageUrl`/`thumbnailUrl`: the CDN in AWS, `{public_url}/files` locally.
    pub public_base_url: String,
    /// Recorded as `s3Bucket` (the bucket name in AWS, `local` on the embedded store).
    pub bucket_label: String,
}

/// The storage the settings choose: S3 + DynamoDB when both are named, else embedded. The
/// CDN defaults to the path-style S3 URL of the bucket at the SDK's endpoint.
pub fn storage(settings: &StoreSettings, aws: &aws_config::SdkConfig) -> Storage {
    match (&settings.s3_bucket, &settings.dynamodb_table) {
        (Some(bucket), Some(table)) => {
            let cdn_url = match &settings.cdn_url {
                Some(url) => url.clone(),
                None => {
                    let endpoint = aws.endpoint_url().unwrap_or("https://s3.amazonaws.com");
                    format!("{}/{bucket}", endpoint.trim_end_matches('/'))
                }
            };
            Storage::Aws {
                bucket: bucket.clone(),
                table: table.clone(),
                force_path_style: settings.s3_force_path_style,
                cdn_url,
            }
        }
        _ => Storage::Embedded,
    }
}

/// S3's client for `aws`, path-style addressing if asked for.
fn s3_client(aws: &aws_config::SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(aws)
            .force_path_style(force_path_style)
            .build(),
    )
}

/// The stores on `storage`; embedded ones under `data_dir`, their objects served under
/// `public_url`. `aws` configures the SDK clients when AWS is chosen (region, credentials,
/// endpoint).
pub async fn stores(
    data_dir: &Path,
    public_url: &str,
    storage: &Storage,
    aws: &aws_config::SdkConfig,
) -> anyhow::Result<Stores> {
    match storage {
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
            Ok(Stores {
                blobs: Arc::new(blobs),
                metadata: Arc::new(metadata),
                public_base_url: format!("{}/files", public_url.trim_end_matches('/')),
                bucket_label: "local".to_owned(),
            })
        }
        Storage::Aws {
            bucket,
            table,
            force_path_style,
            cdn_url,
        } => {
            let dynamodb = aws_sdk_dynamodb::Client::new(aws);
            Ok(Stores {
                blobs: Arc::new(S3BlobStore::new(
                    s3_client(aws, *force_path_style),
                    bucket.clone(),
                )),
                metadata: Arc::new(DynamoMetadataStore::new(dynamodb, table.clone())),
                public_base_url: cdn_url.trim_end_matches('/').to_owned(),
                bucket_label: bucket.clone(),
            })
        }
    }
}

/// Where two-step uploads send originals: presigned S3 PUTs, or this server's own signed
/// URLs under `public_url`.
fn staging(
    storage: &Storage,
    aws: &aws_config::SdkConfig,
    public_url: &str,
    signer: Arc<UrlSigner>,
) -> Arc<dyn UploadStaging> {
    match storage {
        Storage::Embedded => Arc::new(LocalStaging {
            base_url: public_url.trim_end_matches('/').to_owned(),
            signer,
        }),
        Storage::Aws {
            bucket,
            force_path_style,
            ..
        } => Arc::new(S3Staging::new(
            s3_client(aws, *force_path_style),
            bucket.clone(),
        )),
    }
}

/// An identity provider's public keys and the `iss`/`aud` its tokens must carry.
pub struct IdentityProvider {
    pub keys: jsonwebtoken::jwk::JwkSet,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// What the service is made of beyond its storage; the defaults are `serve`'s.
pub struct AppOptions {
    /// `IMGSVC_JWT_SECRET`; unset, the data dir's generated secret.
    pub jwt_secret: Option<String>,
    /// An identity provider whose tokens are accepted beside the service's own.
    pub identity_provider: Option<IdentityProvider>,
    /// Let the identity provider grant the service scope (`IMGSVC_JWKS_SERVICE_SCOPE`).
    pub jwks_service_scope: bool,
    pub processor: Processor,
    pub limits: Limits,
    pub max_inflight_uploads: usize,
    /// The legacy gallery's database URL and flags, when one is configured.
    pub legacy: Option<(String, Arc<dyn FlagSource>)>,
    /// Inside Lambda: metrics are also written as CloudWatch EMF lines.
    pub in_lambda: bool,
}

impl Default for AppOptions {
    fn default() -> AppOptions {
        AppOptions {
            jwt_secret: None,
            identity_provider: None,
            jwks_service_scope: false,
            processor: Processor::Native,
            limits: Limits::default(),
            max_inflight_uploads: DEFAULT_MAX_INFLIGHT_UPLOADS,
            legacy: None,
            in_lambda: false,
        }
    }
}

/// The service on `storage`, in one pass: the secret and the keys derived from it, the
/// stores, the staging, and (with `options.legacy`) the legacy gallery.
pub async fn app(
    data_dir: &Path,
    public_url: &str,
    storage: &Storage,
    aws: &aws_config::SdkConfig,
    options: AppOptions,
) -> anyhow::Result<App> {
    let secret = secret(data_dir, options.jwt_secret.as_deref())?;
    let url_signer = Arc::new(UrlSigner::new(&derive_key(&secret, "upload-url")));
    let stores = stores(data_dir, public_url, storage, aws).await?;
    let staging = staging(storage, aws, public_url, url_signer.clone());
    let mut auth = authenticator(&secret).trusting_jwks_service_scope(options.jwks_service_scope);
    if let Some(provider) = options.identity_provider {
        auth = auth
            .with_jwks(&provider.keys, provider.issuer, provider.audience)
            .context("IMGSVC_JWKS")?;
    }
    let gallery = match options.legacy {
        Some((database_url, flags)) => Some(Arc::new(
            gallery(
                stores.metadata.clone(),
                &stores.public_base_url,
                &database_url,
                flags,
                options.in_lambda,
            )
            .await?,
        )),
        None => None,
    };
    Ok(App {
        blobs: stores.blobs,
        metadata: stores.metadata,
        auth: Arc::new(auth),
        cursors: Arc::new(CursorCodec::new(&derive_key(&secret, "cursor"))),
        policy: imgsvc_core::Policy::default(),
        public_base_url: stores.public_base_url,
        bucket_label: stores.bucket_label,
        staging,
        url_signer,
        gallery,
        telemetry: Arc::new(Telemetry::new(options.in_lambda)),
        processing: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        )),
        uploads: Arc::new(tokio::sync::Semaphore::new(options.max_inflight_uploads)),
        processor: Arc::new(options.processor),
        limits: options.limits,
    })
}

/// The service on embedded storage under `data_dir`, with URLs under `public_url` and
/// `serve`'s defaults (the benches and tests).
pub async fn embedded_app(data_dir: &Path, public_url: &str) -> anyhow::Result<App> {
    let aws = aws_sdk_config(&AwsTimeouts::default()).await;
    app(
        data_dir,
        public_url,
        &Storage::Embedded,
        &aws,
        AppOptions::default(),
    )
    .await
}

/// The service `serve` runs, from its settings, objects served under `public_url`. The
/// sandbox settings are checked first, so an unusable one refuses to start without side
/// effects.
pub async fn serving_app(settings: &ServeSettings, public_url: &str) -> anyhow::Result<App> {
    let processor =
        Processor::from_config(&settings.sandbox.config()).context("the sandbox settings")?;
    let aws = aws_sdk_config(&settings.stores.aws_timeouts.aws_timeouts()).await;
    let storage = storage(&settings.stores, &aws);
    let auth = &settings.auth;
    let jwks = match (&auth.jwks, &auth.jwks_file) {
        (Some(inline), _) => Some(inline.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the JWKS {}", path.display()))?,
        ),
        (None, None) => None,
    };
    let identity_provider = match jwks {
        Some(jwks) => Some(IdentityProvider {
            keys: serde_json::from_str(&jwks).context("IMGSVC_JWKS is not a JWKS document")?,
            issuer: auth.jwt_issuer.clone(),
            audience: auth.jwt_audience.clone(),
        }),
        None => None,
    };
    let legacy = match legacy_database_url(&settings.legacy.store) {
        Some(url) => Some((url, flag_source(&settings.legacy)?)),
        None => None,
    };
    let options = AppOptions {
        jwt_secret: settings.secret.jwt_secret.clone(),
        identity_provider,
        jwks_service_scope: auth.jwks_service_scope,
        processor,
        limits: settings.limits.app(),
        max_inflight_uploads: settings.limits.max_inflight_uploads(),
        legacy,
        in_lambda: settings.runtime.in_lambda(),
    };
    app(
        &settings.stores.data_dir,
        public_url,
        &storage,
        &aws,
        options,
    )
    .await
}

/// What `imgsvc migrate` works on: the Image Service's stores and the legacy gallery (no
/// secret, sandbox or identity provider: the commands serve no requests).
pub async fn migration(settings: &MigrateSettings) -> anyhow::Result<(Stores, Gallery)> {
    let aws = aws_sdk_config(&settings.stores.aws_timeouts.aws_timeouts()).await;
    let storage = storage(&settings.stores, &aws);
    let public_url = settings.stores.public_url.clone().unwrap_or_default();
    let database_url = legacy_database_url(&settings.legacy.store)
        .context("IMGSVC_LEGACY_DATABASE_URL (--legacy-database-url) is required")?;
    let stores = stores(&settings.stores.data_dir, &public_url, &storage, &aws).await?;
    let gallery = gallery(
        stores.metadata.clone(),
        &stores.public_base_url,
        &database_url,
        flag_source(&settings.legacy)?,
        settings.runtime.in_lambda(),
    )
    .await?;
    Ok((stores, gallery))
}

/// The legacy gallery's store, when one is configured (the sweep keeps its uploads'
/// objects).
pub async fn legacy_store(
    settings: &LegacyStoreSettings,
) -> anyhow::Result<Option<Arc<dyn LegacyStore>>> {
    match legacy_database_url(settings) {
        Some(url) => Ok(Some(connect_legacy(&url).await?)),
        None => Ok(None),
    }
}

/// The legacy database's URL with the statement timeout, if one is configured.
fn legacy_database_url(settings: &LegacyStoreSettings) -> Option<String> {
    settings.legacy_database_url.as_deref().map(|url| {
        with_statement_timeout(url, Duration::from_millis(settings.pg_statement_timeout_ms))
    })
}

async fn connect_legacy(database_url: &str) -> anyhow::Result<Arc<dyn LegacyStore>> {
    Ok(Arc::new(
        PgLegacyStore::connect(database_url)
            .await
            .context("connecting to the legacy PostgreSQL database")?,
    ))
}

/// The legacy gallery on PostgreSQL at `database_url`, mirroring into `metadata` (records
/// with URLs under `public_base_url`), with flags from `flags`; `emf`: metrics also as
/// CloudWatch EMF lines (in Lambda).
pub async fn gallery(
    metadata: Arc<dyn MetadataStore>,
    public_base_url: &str,
    database_url: &str,
    flags: Arc<dyn FlagSource>,
    emf: bool,
) -> anyhow::Result<Gallery> {
    let legacy = connect_legacy(database_url).await?;
    let metrics = Arc::new(MigrationMetrics::new(emf));
    let mirror = Arc::new(Mirror {
        legacy: legacy.clone(),
        target: metadata,
        public_base_url: public_base_url.to_owned(),
        metrics: metrics.clone(),
        breaker: Arc::default(),
    });
    Ok(Gallery {
        legacy,
        mirror,
        flags,
        metrics,
    })
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

/// The migration flags: the flags file (re-read when it changes) if one is set, else the
/// flags' own settings. Invalid values refuse to start.
pub fn flag_source(settings: &LegacySettings) -> anyhow::Result<Arc<dyn FlagSource>> {
    match &settings.flags_file {
        Some(path) => Ok(Arc::new(
            FileFlags::open(path.clone()).map_err(anyhow::Error::msg)?,
        )),
        None => Ok(Arc::new(StaticFlags(Flags::from_lookup(|name| {
            settings.flags.value_of(name)
        })?))),
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
            assert!(secret(dir.path(), None).is_err(), "{bad:?} accepted");
        }
        let good = "0123456789abcdef".repeat(4);
        std::fs::write(&path, format!("{good}\n")).unwrap();
        assert_eq!(secret(dir.path(), None).unwrap(), good.as_bytes());
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
        let first = secret(dir.path(), None).unwrap();
        assert_eq!(first.len(), 64);
        assert!(first.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(secret(dir.path(), None).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

//! The settings: every flag and environment variable the `imgsvc` binary reads — the Lambda
//! detection, the secret, the log format and the migration flags included — parsed once,
//! by clap, into [`Settings`]. Nothing else in the crate reads the environment (the AWS
//! SDK's own `AWS_*` settings and `RUST_LOG` aside, read by their libraries). Each command
//! takes only the groups it needs. docs/configuration.md lists them all.

pub mod limits;
pub mod sandbox;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};

use crate::api::{DEFAULT_MAX_JSON_BODY_BYTES, FormLimits, HttpSettings};
use limits::{AwsTimeoutSettings, EdgeLimits, ServiceLimits, SweepLimits};
use sandbox::SandboxSettings;

#[derive(Debug, Parser)]
#[command(
    name = "imgsvc",
    version,
    about = "The imgsvc image service and its tools"
)]
pub struct Settings {
    #[command(subcommand)]
    pub command: Command,
}

// One value per process, parsed at start: boxing the large variants would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the upload pipeline on local files: writes DIR/<stem>.webp and
    /// DIR/<stem>.thumb.webp and prints one JSON object per input. Exit status: 0 when all
    /// succeeded, 1 when any input was refused, 2 for usage errors.
    Process(ProcessSettings),
    /// Serve the HTTP API locally, on embedded storage under the data directory.
    Serve(ServeSettings),
    /// The migration from the legacy gallery: drain the outbox, backfill, verify,
    /// reconcile, reverse.
    Migrate(MigrateSettings),
    /// Set up the AWS stores: `aws init` creates the table and the bucket.
    Aws(AwsSettings),
    /// Remove expired staged originals and image objects no record names (what a killed
    /// upload leaves), on the stores `serve` uses; `--dry-run` only reports.
    Sweep(SweepSettings),
    /// Print a development token for the local server.
    Token(TokenSettings),
}

/// How the process runs: its log format, and whether it is inside AWS Lambda.
#[derive(Debug, Clone, Args)]
pub struct RuntimeSettings {
    /// Log lines as JSON (`json`) or as text (anything else, the default). Always JSON in
    /// Lambda.
    #[arg(long, env = "IMGSVC_LOG_FORMAT", value_name = "text|json")]
    pub log_format: Option<String>,
    /// The Lambda runtime API's address, which Lambda itself sets in a function's
    /// environment: present, `serve` runs under the Lambda runtime, logs are JSON and
    /// metrics are also written as CloudWatch EMF lines.
    #[arg(long, env = "AWS_LAMBDA_RUNTIME_API", hide = true)]
    pub lambda_runtime_api: Option<String>,
}

impl RuntimeSettings {
    /// True inside a Lambda execution environment (its runtime API is announced there).
    pub fn in_lambda(&self) -> bool {
        self.lambda_runtime_api.is_some()
    }

    /// JSON logs: in Lambda (CloudWatch Logs Insights reads the fields) or when asked for.
    pub fn json_logs(&self) -> bool {
        self.in_lambda() || self.log_format.as_deref() == Some("json")
    }
}

/// Where objects and records live: embedded under the data directory, or S3 + DynamoDB.
#[derive(Debug, Clone, Args)]
pub struct StoreSettings {
    /// Where objects, records and the local secret live.
    #[arg(long, env = "IMGSVC_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Base URL clients reach this server at (for imageUrl/thumbnailUrl); defaults to
    /// http://{bind}.
    #[arg(long, env = "IMGSVC_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// S3 bucket for the images; with --dynamodb-table, switches from embedded storage to
    /// AWS (endpoint, region and credentials from the usual AWS_* settings).
    #[arg(long, env = "IMGSVC_S3_BUCKET", requires = "dynamodb_table")]
    pub s3_bucket: Option<String>,
    /// DynamoDB table for the records (needs --s3-bucket).
    #[arg(long, env = "IMGSVC_DYNAMODB_TABLE", requires = "s3_bucket")]
    pub dynamodb_table: Option<String>,
    /// Path-style S3 addressing (needed by local S3 emulators).
    #[arg(long, env = "IMGSVC_S3_FORCE_PATH_STYLE", default_value_t = false)]
    pub s3_force_path_style: bool,
    /// Base URL of the CDN serving the bucket (imageUrl/thumbnailUrl); defaults to the
    /// path-style S3 URL of the bucket.
    #[arg(long, env = "IMGSVC_CDN_URL")]
    pub cdn_url: Option<String>,
    #[command(flatten)]
    pub aws_timeouts: AwsTimeoutSettings,
}

/// The service's secret, from which the token, cursor and upload-URL keys are derived.
#[derive(Debug, Clone, Args)]
pub struct SecretSettings {
    /// The secret (at least 32 characters); unset, `{data dir}/secret` is used, generated
    /// the first time. Required in Lambda, where instances share no disk.
    #[arg(long, env = "IMGSVC_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

/// Who may call: the service's own tokens, an identity provider's (JWKS), API Gateway's
/// authorizer.
#[derive(Debug, Clone, Args)]
pub struct AuthSettings {
    /// Behind API Gateway's JWT authorizer: take the caller from its verified claims.
    #[arg(long, env = "IMGSVC_TRUST_AUTHORIZER", default_value_t = false)]
    pub trust_authorizer: bool,
    /// An identity provider's public keys (a JWKS document, inline JSON): tokens it signs
    /// (RS256, ES256, …, chosen by `kid`) are accepted beside the service's own HS256 ones.
    #[arg(long, env = "IMGSVC_JWKS", conflicts_with = "jwks_file")]
    pub jwks: Option<String>,
    /// The same JWKS, read from a file.
    #[arg(long, env = "IMGSVC_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` of JWKS-signed tokens.
    #[arg(long, env = "IMGSVC_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of JWKS-signed tokens.
    #[arg(long, env = "IMGSVC_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Let the identity provider grant the `images:service` scope (in its JWKS-signed tokens
    /// and, with --trust-authorizer, the authorizer's claims). Off: only the service's own
    /// tokens (`imgsvc token --service`) can act for other users.
    #[arg(long, env = "IMGSVC_JWKS_SERVICE_SCOPE", default_value_t = false)]
    pub jwks_service_scope: bool,
}

/// Bounds on request bodies and forms, and the preview page.
#[derive(Debug, Clone, Args)]
pub struct RequestSettings {
    /// Largest JSON request body (PATCH, POST /uploads, complete), in bytes; larger → 413.
    #[arg(
        long,
        env = "IMGSVC_MAX_JSON_BODY_BYTES",
        default_value_t = DEFAULT_MAX_JSON_BODY_BYTES,
        value_parser = clap::value_parser!(u32).range(1024..=16 * 1024 * 1024).map(|bytes| bytes as usize)
    )]
    pub max_json_body_bytes: usize,
    /// Most parts in an upload form (POST /images); more → 400 invalid_multipart.
    #[arg(
        long,
        env = "IMGSVC_MAX_FORM_PARTS",
        default_value_t = FormLimits::DEFAULT_PARTS,
        value_parser = clap::value_parser!(u32).range(4..=100_000).map(|parts| parts as usize)
    )]
    pub max_form_parts: usize,
    /// Most bytes of an upload form's text fields, all together; more → 400 invalid_field.
    #[arg(
        long,
        env = "IMGSVC_MAX_FORM_TEXT_BYTES",
        default_value_t = FormLimits::DEFAULT_TEXT_BYTES,
        value_parser = clap::value_parser!(u32).range(1024..=16 * 1024 * 1024).map(|bytes| bytes as usize)
    )]
    pub max_form_text_bytes: usize,
    /// The browser preview page served at `/` (the built `imgsvc-wasm` package); defaults
    /// to `host-wasm/dist` in the source tree the binary was built from.
    #[arg(long, env = "IMGSVC_PREVIEW_DIR", value_name = "DIR")]
    pub preview_dir: Option<PathBuf>,
}

/// The legacy gallery's PostgreSQL.
#[derive(Debug, Clone, Args)]
pub struct LegacyStoreSettings {
    /// The legacy gallery's PostgreSQL (`postgres://…`): serves `/gallery/images…` and the
    /// migration (flags from the environment or IMGSVC_FLAGS_FILE).
    #[arg(long, env = "IMGSVC_LEGACY_DATABASE_URL")]
    pub legacy_database_url: Option<String>,
    /// Milliseconds a statement on the legacy PostgreSQL may run (its `statement_timeout`,
    /// unless the database URL sets one).
    #[arg(long, env = "IMGSVC_PG_STATEMENT_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub pg_statement_timeout_ms: u64,
}

/// The legacy gallery and the migration flags (`serve`, `migrate`).
#[derive(Debug, Clone, Args)]
pub struct LegacySettings {
    #[command(flatten)]
    pub store: LegacyStoreSettings,
    /// A `KEY=value` file of the migration flags, re-read when it changes (flags flip
    /// without a restart); set, the flags' variables below are not used.
    #[arg(long, env = "IMGSVC_FLAGS_FILE", value_name = "FILE")]
    pub flags_file: Option<PathBuf>,
    #[command(flatten)]
    pub flags: MigrationFlagSettings,
}

/// The migration flags, when they are not in a flags file: validated by
/// `migrate::flags::Flags::from_lookup` (docs/migration.md has what each does).
#[derive(Debug, Clone, Args)]
pub struct MigrationFlagSettings {
    /// Write an outbox entry with every gallery write and mirror it (true/false).
    #[arg(long, env = "ENABLE_DYNAMODB_DUAL_WRITE", value_name = "BOOL")]
    pub enable_dynamodb_dual_write: Option<String>,
    /// Route gallery reads to the Image Service, for ROLLOUT_PERCENTAGE of users (true/false).
    #[arg(long, env = "USE_IMAGE_SERVICE", value_name = "BOOL")]
    pub use_image_service: Option<String>,
    /// Users (0–100 %) whose reads go to the Image Service when USE_IMAGE_SERVICE is on.
    #[arg(long, env = "ROLLOUT_PERCENTAGE", value_name = "PERCENT")]
    pub rollout_percentage: Option<String>,
    /// Read both sides, serve PostgreSQL's answer, count differences (true/false).
    #[arg(long, env = "SHADOW_READS", value_name = "BOOL")]
    pub shadow_reads: Option<String>,
    /// Milliseconds a routed read waits for the Image Service (1–60000).
    #[arg(long, env = "IMAGE_SERVICE_TIMEOUT_MS", value_name = "MS")]
    pub image_service_timeout_ms: Option<String>,
    /// Image Service failures in a row that open the circuit breaker (1–1000).
    #[arg(long, env = "CIRCUIT_BREAKER_FAILURES", value_name = "N")]
    pub circuit_breaker_failures: Option<String>,
    /// Milliseconds an open circuit breaker skips the Image Service (100–600000).
    #[arg(long, env = "CIRCUIT_BREAKER_COOLDOWN_MS", value_name = "MS")]
    pub circuit_breaker_cooldown_ms: Option<String>,
}

impl MigrationFlagSettings {
    /// A flag's value by its name (`migrate::flags::FLAG_NAMES`), as given.
    pub fn value_of(&self, name: &str) -> Option<String> {
        match name {
            "ENABLE_DYNAMODB_DUAL_WRITE" => self.enable_dynamodb_dual_write.clone(),
            "USE_IMAGE_SERVICE" => self.use_image_service.clone(),
            "ROLLOUT_PERCENTAGE" => self.rollout_percentage.clone(),
            "SHADOW_READS" => self.shadow_reads.clone(),
            "IMAGE_SERVICE_TIMEOUT_MS" => self.image_service_timeout_ms.clone(),
            "CIRCUIT_BREAKER_FAILURES" => self.circuit_breaker_failures.clone(),
            "CIRCUIT_BREAKER_COOLDOWN_MS" => self.circuit_breaker_cooldown_ms.clone(),
            _ => None,
        }
    }
}

/// `imgsvc serve`.
#[derive(Debug, Args)]
pub struct ServeSettings {
    /// Address to listen on.
    #[arg(long, env = "IMGSVC_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub stores: StoreSettings,
    #[command(flatten)]
    pub secret: SecretSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
    #[command(flatten)]
    pub requests: RequestSettings,
    #[command(flatten)]
    pub legacy: LegacySettings,
    #[command(flatten)]
    pub sandbox: SandboxSettings,
    #[command(flatten)]
    pub edge: EdgeLimits,
    #[command(flatten)]
    pub limits: ServiceLimits,
    #[command(flatten)]
    pub runtime: RuntimeSettings,
}

impl ServeSettings {
    /// What the HTTP layer alone decides.
    pub fn http(&self) -> HttpSettings {
        HttpSettings {
            trust_authorizer: self.auth.trust_authorizer,
            max_json_body_bytes: self.requests.max_json_body_bytes,
            form_limits: FormLimits {
                parts: self.requests.max_form_parts,
                text_bytes: self.requests.max_form_text_bytes,
            },
            preview_dir: self
                .requests
                .preview_dir
                .clone()
                .unwrap_or_else(|| HttpSettings::default().preview_dir),
        }
    }
}

/// `imgsvc sweep`: the stores (and the legacy gallery, whose uploads share the keys).
#[derive(Debug, Args)]
pub struct SweepSettings {
    /// Report what would be removed (logged per key); remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub stores: StoreSettings,
    #[command(flatten)]
    pub legacy: LegacyStoreSettings,
    #[command(flatten)]
    pub sweep: SweepLimits,
    #[command(flatten)]
    pub runtime: RuntimeSettings,
}

/// `imgsvc migrate …`: the legacy gallery and the Image Service's stores.
#[derive(Debug, Args)]
pub struct MigrateSettings {
    #[command(subcommand)]
    pub command: MigrateCommand,
    /// Progress as JSON lines on stderr even on a terminal (without a terminal it always is).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub stores: StoreSettings,
    #[command(flatten)]
    pub legacy: LegacySettings,
    #[command(flatten)]
    pub runtime: RuntimeSettings,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Retry the pending mirrors in the outbox that are due. Exit 0 when the outbox is empty
    /// after it, 1 when entries remain (the output says how many wait, and until when).
    Drain {
        /// Retry every entry now, also those waiting out their backoff.
        #[arg(long)]
        now: bool,
        /// Keep draining for up to this long (`30s`, `5m`) while entries wait out their
        /// backoff, until the outbox is empty.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<std::time::Duration>,
    },
    /// Copy every legacy row to the Image Service in batches, never overwriting a newer
    /// version, checkpointing after each batch; then apply the deletes PostgreSQL remembers.
    Backfill {
        #[arg(long, default_value_t = 25)]
        batch_size: usize,
        /// At most this many rows per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Read and map everything, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Continue after the last checkpoint instead of starting over.
        #[arg(long)]
        resume: bool,
    },
    /// Make both sides agree, image by image: the newest version wins in either direction,
    /// a delete wins over an older row, a side without the image gets it. Refuses (exit 1,
    /// nothing written) when a version differs in content on the two sides, unless --from
    /// names the side that wins.
    Reconcile {
        /// The side that wins every difference, even where it is older (written at a
        /// version above both, on both sides).
        #[arg(long, value_enum)]
        from: Option<crate::migrate::reconcile::Direction>,
        /// Print what would change (one JSON line per image), change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy the Image Service back to PostgreSQL (rollback after legacy writes stopped):
    /// a row is only replaced by a newer version, and deletes made in the Image Service
    /// remove their rows.
    Reverse,
    /// Compare every legacy row with its Image Service record. Exit 0 on a 100 % match,
    /// 1 on any difference, 2 when it could not run.
    Verify {
        /// Only rows, and Image Service records, updated within this long (`1h`, `2d`).
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "all")]
        since: Option<std::time::Duration>,
        /// Every row (the default).
        #[arg(long)]
        all: bool,
        /// Write the full report (every missing id and mismatched field) here as JSON.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct AwsSettings {
    #[command(subcommand)]
    pub command: AwsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Create the table (PK/SK, GSI1 and GSI2 as the template has them, TTL on
    /// `expiresAt`) and the bucket, unless they exist. Endpoint, region and credentials
    /// come from the usual AWS_* settings.
    Init {
        #[arg(long, env = "IMGSVC_DYNAMODB_TABLE")]
        table: String,
        #[arg(long, env = "IMGSVC_S3_BUCKET")]
        bucket: String,
        /// Path-style S3 addressing (local emulators need it).
        #[arg(long, env = "IMGSVC_S3_FORCE_PATH_STYLE", default_value_t = false)]
        s3_force_path_style: bool,
    },
}

/// `imgsvc token`.
#[derive(Debug, Args)]
pub struct TokenSettings {
    /// The user the token is for (its `sub` claim).
    #[arg(long)]
    pub user: String,
    /// The data directory of the server that will check the token.
    #[arg(long, env = "IMGSVC_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Lifetime in hours.
    #[arg(long, default_value_t = 24)]
    pub hours: u64,
    /// Add the service scope, which may act for any user.
    #[arg(long)]
    pub service: bool,
    #[command(flatten)]
    pub secret: SecretSettings,
}

/// `imgsvc process`.
#[derive(Debug, Args)]
pub struct ProcessSettings {
    /// Directory for the outputs (created if missing).
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// Images to process.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub sandbox: SandboxSettings,
}

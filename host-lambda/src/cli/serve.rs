//! `imgsvc serve`: the API on embedded storage (filesystem + SQLite under the data dir).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use clap::builder::TypedValueParser as _;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "IMGSVC_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
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
    /// Largest JSON request body (PATCH, POST /uploads, complete), in bytes; larger → 413.
    #[arg(
        long,
        env = "IMGSVC_MAX_JSON_BODY_BYTES",
        default_value_t = crate::api::DEFAULT_MAX_JSON_BODY_BYTES,
        value_parser = clap::value_parser!(u32).range(1024..=16 * 1024 * 1024).map(|bytes| bytes as usize)
    )]
    pub max_json_body_bytes: usize,
    /// Most parts in an upload form (POST /images); more → 400 invalid_multipart.
    #[arg(
        long,
        env = "IMGSVC_MAX_FORM_PARTS",
        default_value_t = crate::api::FormLimits::DEFAULT_PARTS,
        value_parser = clap::value_parser!(u32).range(4..=100_000).map(|parts| parts as usize)
    )]
    pub max_form_parts: usize,
    /// Most bytes of an upload form's text fields, all together; more → 400 invalid_field.
    #[arg(
        long,
        env = "IMGSVC_MAX_FORM_TEXT_BYTES",
        default_value_t = crate::api::FormLimits::DEFAULT_TEXT_BYTES,
        value_parser = clap::value_parser!(u32).range(1024..=16 * 1024 * 1024).map(|bytes| bytes as usize)
    )]
    pub max_form_text_bytes: usize,
    /// The legacy gallery's PostgreSQL (`postgres://…`): serves `/gallery/images…` and the
    /// migration (flags from the environment or IMGSVC_FLAGS_FILE).
    #[arg(long, env = "IMGSVC_LEGACY_DATABASE_URL")]
    pub legacy_database_url: Option<String>,
    #[command(flatten)]
    pub sandbox: super::sandbox::SandboxArgs,
    #[command(flatten)]
    pub limits: super::limits::LimitsArgs,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if crate::lambda::is_lambda() {
        return serve_lambda(args).await;
    }
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let address = listener.local_addr()?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    let connections = args.limits.connections();
    let sweep_interval = std::time::Duration::from_secs(args.limits.sweep_interval_seconds);
    // Orphans on S3 are the operator's (`imgsvc sweep`): every instance listing the
    // bucket would be costly, and Lambda has no background time anyway.
    let sweep_orphans = args.s3_bucket.is_none();
    let state = app_state(args, &public_url, true).await?;
    tokio::spawn(sweep(state.clone(), sweep_interval, sweep_orphans));
    let app = crate::api::router(state).layer(tower_http::trace::TraceLayer::new_for_http());
    tracing::info!(%address, "imgsvc listening");
    // The line tests and scripts wait for: the actual address (the port may have been 0).
    println!("listening on http://{address}");
    crate::edge::serve(listener, app, connections, shutdown_signal()).await;
    Ok(())
}

/// In Lambda: the same router under the Lambda runtime, on S3 + DynamoDB only (a
/// function's disk is scratch space, so embedded storage would lose data).
async fn serve_lambda(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.s3_bucket.is_some() && args.dynamodb_table.is_some(),
        "in Lambda, IMGSVC_S3_BUCKET and IMGSVC_DYNAMODB_TABLE must be set"
    );
    // Every instance must sign and check cursors and URLs with the same key.
    anyhow::ensure!(
        std::env::var_os("IMGSVC_JWT_SECRET").is_some(),
        "in Lambda, IMGSVC_JWT_SECRET must be set (instances share no disk)"
    );
    let public_url = args.public_url.clone().unwrap_or_default();
    let state = app_state(args, &public_url, true).await?;
    crate::lambda::run(crate::api::router(state))
        .await
        .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}

/// The app state the arguments describe.
/// `drain` starts the background outbox drain (serve does; one-off commands don't).
pub(super) async fn app_state(
    args: ServeArgs,
    public_url: &str,
    drain: bool,
) -> anyhow::Result<crate::api::AppState> {
    let aws = crate::local::aws_sdk_config(&args.limits.aws_timeouts()).await;
    let storage = match (args.s3_bucket, args.dynamodb_table) {
        (Some(bucket), Some(table)) => {
            let cdn_url = match args.cdn_url {
                Some(url) => url,
                None => {
                    let endpoint = aws.endpoint_url().unwrap_or("https://s3.amazonaws.com");
                    format!("{}/{bucket}", endpoint.trim_end_matches('/'))
                }
            };
            crate::local::Storage::Aws {
                bucket,
                table,
                force_path_style: args.s3_force_path_style,
                cdn_url,
            }
        }
        _ => crate::local::Storage::Embedded,
    };
    let legacy_database_url = args.legacy_database_url.clone();
    let pg_statement_timeout =
        std::time::Duration::from_millis(args.limits.pg_statement_timeout_ms);
    // Before the stores: an unusable sandbox setting refuses to start without side effects.
    let processor = crate::processor::Processor::from_config(&args.sandbox.config())
        .context("the sandbox settings")?;
    let jwks = match (&args.jwks, &args.jwks_file) {
        (Some(inline), _) => Some(inline.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the JWKS {}", path.display()))?,
        ),
        (None, None) => None,
    };
    let mut state = crate::local::state_with(&args.data_dir, public_url, &storage, &aws).await?;
    state.trust_authorizer = args.trust_authorizer;
    state.limits = args.limits.api();
    state.uploads = std::sync::Arc::new(tokio::sync::Semaphore::new(
        usize::try_from(args.limits.max_inflight_uploads).unwrap_or(usize::MAX),
    ));
    state.max_json_body_bytes = args.max_json_body_bytes;
    state.form_limits = crate::api::FormLimits {
        parts: args.max_form_parts,
        text_bytes: args.max_form_text_bytes,
    };
    state.auth = std::sync::Arc::new(
        state
            .auth
            .as_ref()
            .clone()
            .trusting_jwks_service_scope(args.jwks_service_scope),
    );
    state.processor = std::sync::Arc::new(processor);
    if let Some(jwks) = jwks {
        let jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(&jwks).context("IMGSVC_JWKS is not a JWKS document")?;
        let auth = state
            .auth
            .as_ref()
            .clone()
            .with_jwks(&jwks, args.jwt_issuer, args.jwt_audience)
            .context("IMGSVC_JWKS")?;
        state.auth = std::sync::Arc::new(auth);
    }
    if let Some(url) = legacy_database_url {
        let url = crate::local::with_statement_timeout(&url, pg_statement_timeout);
        let gallery = crate::local::gallery(&state, &url, crate::local::flag_source()?).await?;
        if drain {
            // The outbox drain: retries what the immediate mirror missed, with backoff.
            tokio::spawn(
                gallery
                    .mirror
                    .clone()
                    .run_drain(std::time::Duration::from_secs(5), gallery.flags.clone()),
            );
        }
        state.gallery = Some(gallery);
    }
    Ok(state)
}

/// Remove expired staged originals and (`orphans`) image objects no record names, now and
/// every `interval` (Lambda has no background time; there an S3 lifecycle rule on
/// `uploads/` removes staged originals, and `imgsvc sweep` orphans).
async fn sweep(state: crate::api::AppState, interval: std::time::Duration, orphans: bool) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = sweep_once(&state, orphans, true).await {
            tracing::warn!(error = %format!("{error:#}"), "sweep failed");
        }
    }
}

/// One sweep: expired staged originals, then (`orphans`) orphaned image objects; removes
/// them when `delete`, else only reports. How many of each.
pub(super) async fn sweep_once(
    state: &crate::api::AppState,
    orphans: bool,
    delete: bool,
) -> anyhow::Result<(usize, usize)> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let staged = if delete {
        crate::api::uploads::sweep_staging(state, now)
            .await
            .context("sweeping staged originals")?
    } else {
        0
    };
    let mut orphaned = 0;
    if orphans {
        let grace = i64::try_from(state.limits.orphan_grace.as_secs()).unwrap_or(i64::MAX);
        let keys = crate::upload::sweep_orphans(state, now, grace, delete)
            .await
            .context("sweeping orphaned objects")?;
        for key in &keys {
            tracing::info!(key = %key, removed = delete, "orphaned object");
        }
        orphaned = keys.len();
    }
    if staged + orphaned > 0 {
        tracing::info!(staged, orphaned, removed = delete, "swept");
    }
    Ok((staged, orphaned))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

pub(super) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // JSON in Lambda (CloudWatch Logs Insights reads the fields) or when asked for.
    if crate::lambda::is_lambda() || std::env::var("IMGSVC_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

//! `imgsvc serve`: the API on the local server (tokio, graceful shutdown, the periodic
//! sweep) or, inside Lambda, under the Lambda runtime.

use std::time::Duration;

use anyhow::Context;

use crate::app::App;
use crate::settings::{RuntimeSettings, ServeSettings};

pub fn run(settings: ServeSettings) -> anyhow::Result<()> {
    init_logging(&settings.runtime);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(settings))
}

async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    if settings.runtime.in_lambda() {
        return serve_lambda(settings).await;
    }
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("binding {}", settings.bind))?;
    let address = listener.local_addr()?;
    let public_url = settings
        .stores
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    let app = crate::wiring::serving_app(&settings, &public_url).await?;
    start_drain(&app);
    // Orphans on S3 are the operator's (`imgsvc sweep`): every instance listing the
    // bucket would be costly, and Lambda has no background time anyway.
    let sweep_orphans = settings.stores.s3_bucket.is_none();
    let sweep_interval = Duration::from_secs(settings.limits.sweep_interval_seconds);
    tokio::spawn(sweep(app.clone(), sweep_interval, sweep_orphans));
    tracing::info!(%address, "imgsvc listening");
    // The line tests and scripts wait for: the actual address (the port may have been 0).
    println!("listening on http://{address}");
    crate::api::serve_local(
        listener,
        app,
        settings.http(),
        settings.edge.connections(),
        shutdown_signal(),
    )
    .await;
    Ok(())
}

/// In Lambda: the same router under the Lambda runtime, on S3 + DynamoDB only (a
/// function's disk is scratch space, so embedded storage would lose data).
async fn serve_lambda(settings: ServeSettings) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.stores.s3_bucket.is_some() && settings.stores.dynamodb_table.is_some(),
        "in Lambda, IMGSVC_S3_BUCKET and IMGSVC_DYNAMODB_TABLE must be set"
    );
    // Every instance must sign and check cursors and URLs with the same key.
    anyhow::ensure!(
        settings.secret.jwt_secret.is_some(),
        "in Lambda, IMGSVC_JWT_SECRET must be set (instances share no disk)"
    );
    let public_url = settings.stores.public_url.clone().unwrap_or_default();
    let app = crate::wiring::serving_app(&settings, &public_url).await?;
    start_drain(&app);
    crate::api::serve_lambda(app, settings.http())
        .await
        .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}

/// The outbox drain, when the legacy gallery is configured: retries what the immediate
/// mirror missed, with backoff.
fn start_drain(app: &App) {
    if let Some(gallery) = &app.gallery {
        tokio::spawn(
            gallery
                .mirror
                .clone()
                .run_drain(Duration::from_secs(5), gallery.flags.clone()),
        );
    }
}

/// Remove expired staged originals and (`orphans`) image objects no record names, now and
/// every `interval` (Lambda has no background time; there an S3 lifecycle rule on
/// `uploads/` removes staged originals, and `imgsvc sweep` orphans).
async fn sweep(app: App, interval: Duration, orphans: bool) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let grace = super::sweep::Grace {
        upload: i64::try_from(app.limits.upload_grace.as_secs()).unwrap_or(i64::MAX),
        orphan: i64::try_from(app.limits.orphan_grace.as_secs()).unwrap_or(i64::MAX),
    };
    let legacy = app.gallery.as_ref().map(|gallery| gallery.legacy.clone());
    loop {
        ticks.tick().await;
        let swept = super::sweep::sweep_once(
            app.blobs.as_ref(),
            app.metadata.as_ref(),
            legacy.as_deref(),
            grace,
            orphans,
            true,
        )
        .await;
        if let Err(error) = swept {
            tracing::warn!(error = %format!("{error:#}"), "sweep failed");
        }
    }
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

/// Log lines on stderr, as JSON (in Lambda, or `--log-format json`) or text.
pub(super) fn init_logging(runtime: &RuntimeSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // JSON in Lambda (CloudWatch Logs Insights reads the fields) or when asked for.
    if runtime.json_logs() {
        builder.json().init();
    } else {
        builder.init();
    }
}

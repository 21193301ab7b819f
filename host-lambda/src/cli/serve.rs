//! `imgsvc serve`: the API on embedded storage (filesystem + SQLite under the data dir).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

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
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let address = listener.local_addr()?;
    let public_url = args
        .public_url
        .unwrap_or_else(|| format!("http://{address}"));
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
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
    let state = crate::local::state_with(&args.data_dir, &public_url, &storage, &aws).await?;
    let app = crate::api::router(state).layer(tower_http::trace::TraceLayer::new_for_http());
    tracing::info!(%address, data_dir = %args.data_dir.display(), "imgsvc listening");
    // The line tests and scripts wait for: the actual address (the port may have been 0).
    println!("listening on http://{address}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")
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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("IMGSVC_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

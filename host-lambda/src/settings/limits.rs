//! The limits and timeouts (docs/configuration.md, "Limits and timeouts"), in groups so
//! each command takes only those it applies: the local server's connection edge, the AWS
//! SDK's deadlines, the service's limits, and the sweep's grace periods.

use std::time::Duration;

use clap::Args;

use crate::api::edge::ConnectionLimits;
use crate::app::{DEFAULT_MAX_INFLIGHT_UPLOADS, Limits};
use crate::store::aws::AwsTimeouts;

/// A default `Duration` as the flags' milliseconds (the defaults live in one place: the
/// `Default` impls the library uses).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The local server's connection edge (`serve`).
#[derive(Debug, Clone, Args)]
pub struct EdgeLimits {
    /// Milliseconds a client may take to send a request's headers; also how long an idle
    /// connection (new or kept alive) stays open.
    #[arg(long, env = "IMGSVC_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,
    /// Milliseconds a request body may stall (no byte arriving) before it is refused (408).
    #[arg(long, env = "IMGSVC_BODY_IDLE_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_idle_timeout_ms: u64,
    /// Milliseconds to receive a whole request body (10 MiB at ~300 kbit/s) before it is
    /// refused (408).
    #[arg(long, env = "IMGSVC_BODY_TIMEOUT_MS", default_value_t = 300_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,
    /// Connections served at once; further ones wait in the listen backlog.
    #[arg(long, env = "IMGSVC_MAX_CONNECTIONS", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
}

impl EdgeLimits {
    pub fn connections(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_idle_timeout: Duration::from_millis(self.body_idle_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }
}

/// The deadlines of every S3 and DynamoDB call (every command that reaches them).
#[derive(Debug, Clone, Args)]
pub struct AwsTimeoutSettings {
    /// Milliseconds to open a connection to S3 or DynamoDB.
    #[arg(long, env = "IMGSVC_AWS_CONNECT_TIMEOUT_MS", default_value_t = millis(AwsTimeouts::default().connect),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub aws_connect_timeout_ms: u64,
    /// Milliseconds for one attempt of an S3 or DynamoDB call (a 10 MiB PUT included).
    #[arg(long, env = "IMGSVC_AWS_ATTEMPT_TIMEOUT_MS", default_value_t = millis(AwsTimeouts::default().attempt),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub aws_attempt_timeout_ms: u64,
    /// Milliseconds for an S3 or DynamoDB call, retries included.
    #[arg(long, env = "IMGSVC_AWS_OPERATION_TIMEOUT_MS", default_value_t = millis(AwsTimeouts::default().operation),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub aws_operation_timeout_ms: u64,
}

impl AwsTimeoutSettings {
    pub fn aws_timeouts(&self) -> AwsTimeouts {
        AwsTimeouts {
            connect: Duration::from_millis(self.aws_connect_timeout_ms),
            attempt: Duration::from_millis(self.aws_attempt_timeout_ms),
            operation: Duration::from_millis(self.aws_operation_timeout_ms),
        }
    }
}

/// The sweep's grace periods (`serve`, `sweep`).
#[derive(Debug, Clone, Args)]
pub struct SweepLimits {
    /// Seconds after its URL expired that a two-step upload may still be completed; past
    /// it, its staged original is swept.
    #[arg(long, env = "IMGSVC_UPLOAD_GRACE_SECONDS", default_value_t = Limits::default().upload_grace.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub upload_grace_seconds: u64,
    /// Seconds an image object with no record must have existed before a sweep removes
    /// it (an upload writes its record after its objects, within the store timeouts).
    #[arg(long, env = "IMGSVC_ORPHAN_GRACE_SECONDS", default_value_t = Limits::default().orphan_grace.as_secs(),
          value_parser = clap::value_parser!(u64).range(300..))]
    pub orphan_grace_seconds: u64,
}

impl SweepLimits {
    /// Seconds after its URL expired that a staged original is kept.
    pub fn upload_grace_seconds(&self) -> i64 {
        i64::try_from(self.upload_grace_seconds).unwrap_or(i64::MAX)
    }

    /// Seconds an image object with no record is kept.
    pub fn orphan_grace_seconds(&self) -> i64 {
        i64::try_from(self.orphan_grace_seconds).unwrap_or(i64::MAX)
    }
}

/// The limits the service applies to requests (`serve`).
#[derive(Debug, Clone, Args)]
pub struct ServiceLimits {
    /// Milliseconds `/health` waits for each store before reporting it `timeout` (503).
    #[arg(long, env = "IMGSVC_HEALTH_TIMEOUT_MS", default_value_t = millis(Limits::default().health_timeout),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub health_timeout_ms: u64,
    /// Upload requests taken at once (bodies being received, waiting for a processing
    /// slot, processing, storing); past it, uploads get 503 + Retry-After before their
    /// body is read.
    #[arg(long, env = "IMGSVC_MAX_INFLIGHT_UPLOADS",
          default_value_t = DEFAULT_MAX_INFLIGHT_UPLOADS as u64,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_inflight_uploads: u64,
    /// Open (staged, not completed, not expired) two-step uploads per user.
    #[arg(long, env = "IMGSVC_MAX_OPEN_UPLOADS", default_value_t = Limits::default().max_open_uploads as u64,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_open_uploads: u64,
    /// Seconds between sweeps of expired staged originals and, on embedded storage,
    /// orphaned image objects (one also runs at start).
    #[arg(long, env = "IMGSVC_SWEEP_INTERVAL_SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub sweep_interval_seconds: u64,
    /// Milliseconds an upload waits for a processing slot before it is refused (503
    /// `busy`); keeps every upload shorter than the idempotency lease.
    #[arg(long, env = "IMGSVC_PROCESSING_QUEUE_TIMEOUT_MS", default_value_t = millis(Limits::default().processing_queue_timeout),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub processing_queue_timeout_ms: u64,
    /// Seconds an upload holds its Idempotency-Key before a retry may take it over (the
    /// holder having died); longer than any upload can take.
    #[arg(long, env = "IMGSVC_IDEMPOTENCY_LEASE_SECONDS", default_value_t = Limits::default().idempotency_lease.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idempotency_lease_seconds: u64,
    #[command(flatten)]
    pub sweep: SweepLimits,
}

impl ServiceLimits {
    /// The limits the use cases and handlers apply.
    pub fn app(&self) -> Limits {
        Limits {
            health_timeout: Duration::from_millis(self.health_timeout_ms),
            idempotency_lease: Duration::from_secs(self.idempotency_lease_seconds),
            upload_grace: Duration::from_secs(self.sweep.upload_grace_seconds),
            max_open_uploads: usize::try_from(self.max_open_uploads).unwrap_or(usize::MAX),
            orphan_grace: Duration::from_secs(self.sweep.orphan_grace_seconds),
            processing_queue_timeout: Duration::from_millis(self.processing_queue_timeout_ms),
        }
    }

    /// Upload requests taken at once.
    pub fn max_inflight_uploads(&self) -> usize {
        usize::try_from(self.max_inflight_uploads).unwrap_or(usize::MAX)
    }
}

//! Telemetry: counters and latency histograms per operation and status (Prometheus, for
//! `GET /metrics`), the time in the core per upload and stage, and, in Lambda, the same as
//! CloudWatch Embedded Metric Format lines on stdout (namespace `imgsvc`). The HTTP
//! middleware that feeds it per request is `api::observe`; the migration's metrics
//! (`migrate::metrics`) write their EMF lines through [`emit_emf`] too.

use std::time::Duration;

use imgsvc_core::Stage;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::pipeline::StageTimes;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

fn latency() -> Histogram {
    // 0.1 ms … ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

pub struct Telemetry {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    seconds: Family<OperationLabels, Histogram, fn() -> Histogram>,
    /// Bytes of uploads accepted (the originals, before processing).
    pub upload_bytes: Counter,
    /// Time in the core per upload (decode, orient, resize, encode).
    processing_seconds: Histogram,
    /// Time per pipeline stage (`imgsvc_core::Stage`); the two encodes overlap in time.
    stage_seconds: Family<StageLabels, Histogram, fn() -> Histogram>,
    /// Write CloudWatch EMF lines (in Lambda).
    pub emf: bool,
}

impl Telemetry {
    pub fn new(emf: bool) -> Telemetry {
        let mut registry = Registry::with_prefix("imgsvc");
        let requests = Family::<RequestLabels, Counter>::default();
        let seconds =
            Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let upload_bytes = Counter::default();
        let processing_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let stage_seconds =
            Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                // 1 ms … ~4 s.
                Histogram::new(exponential_buckets(0.001, 2.0, 13))
            });
        registry.register(
            "requests",
            "HTTP requests by operation and status",
            requests.clone(),
        );
        registry.register(
            "request_seconds",
            "HTTP request latency by operation",
            seconds.clone(),
        );
        registry.register(
            "upload_bytes",
            "Bytes of accepted uploads",
            upload_bytes.clone(),
        );
        registry.register(
            "processing_seconds",
            "Time in the image pipeline per upload",
            processing_seconds.clone(),
        );
        registry.register(
            "processing_stage_seconds",
            "Time in each stage of the image pipeline (the display and thumbnail encodes overlap)",
            stage_seconds.clone(),
        );
        Telemetry {
            registry,
            requests,
            seconds,
            upload_bytes,
            processing_seconds,
            stage_seconds,
            emf,
        }
    }

    /// One HTTP request: its operation (`GET /images/{id}`), status and latency.
    pub fn record_request(&self, operation: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.to_owned(),
                status,
            })
            .inc();
        self.seconds
            .get_or_create(&OperationLabels {
                operation: operation.to_owned(),
            })
            .observe(seconds);
        if self.emf {
            emit_emf(
                &[("Operation", operation)],
                &[
                    ("Requests", 1.0, "Count"),
                    ("Errors", f64::from(u8::from(status >= 500)), "Count"),
                    ("RequestLatency", seconds * 1000.0, "Milliseconds"),
                ],
            );
        }
    }

    /// One upload's time in the core, in total and per stage.
    pub fn record_processing(&self, total: Duration, stages: &StageTimes) {
        self.processing_seconds.observe(total.as_secs_f64());
        for (stage, time) in stages.iter().filter(|(_, time)| !time.is_zero()) {
            self.stage_seconds
                .get_or_create(&StageLabels {
                    stage: stage.name(),
                })
                .observe(time.as_secs_f64());
        }
        if self.emf {
            let metrics: Vec<(&str, f64, &str)> = std::iter::once(("ProcessingLatency", total))
                .chain(
                    stages
                        .iter()
                        .map(|(stage, time)| (stage_metric(stage), time)),
                )
                .filter(|(_, time)| !time.is_zero())
                .map(|(name, time)| (name, time.as_secs_f64() * 1000.0, "Milliseconds"))
                .collect();
            emit_emf(&[], &metrics);
        }
    }

    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The EMF metric name of a stage's time.
fn stage_metric(stage: Stage) -> &'static str {
    match stage {
        Stage::Decode => "ProcessingDecodeLatency",
        Stage::Display => "ProcessingDisplayLatency",
        Stage::Thumbnail => "ProcessingThumbnailLatency",
        Stage::EncodeDisplay => "ProcessingEncodeDisplayLatency",
        Stage::EncodeThumbnail => "ProcessingEncodeThumbnailLatency",
    }
}

/// One CloudWatch Embedded Metric Format line on stdout (Lambda ships stdout to CloudWatch
/// Logs, which extracts the metrics): namespace `imgsvc`.
pub fn emit_emf(dimensions: &[(&str, &str)], metrics: &[(&str, f64, &str)]) {
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut line = serde_json::Map::new();
    line.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": i64::try_from(timestamp).unwrap_or(0),
            "CloudWatchMetrics": [{
                "Namespace": "imgsvc",
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|(name, _, unit)| serde_json::json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (key, value) in dimensions {
        line.insert((*key).into(), serde_json::json!(value));
    }
    for (name, value, _) in metrics {
        line.insert((*name).into(), serde_json::json!(value));
    }
    println!("{}", serde_json::Value::Object(line));
}

//! Counters and latency histograms of the migration, per origin: dual-write outcomes, read
//! routing (Image Service, legacy, fallbacks and why), shadow mismatches. Rendered as JSON
//! for `/dual-write/status` and in the Prometheus text format for `/dual-write/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::{Map, Value, json};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabels {
    /// `image_service` or `legacy`.
    pub origin: String,
    /// `ok`, or why the read fell back: `timeout`, `error`, `missing`, `breaker_open`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabels {
    pub origin: String,
}

fn latency() -> Histogram {
    // 0.5 ms … ~8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

pub struct MigrationMetrics {
    registry: Registry,
    /// Mirror attempts: `success`, `failure` (immediate), `skipped` (breaker open: left to
    /// the outbox), `drained`, `drain_failure`.
    pub mirrors: Family<OutcomeLabels, Counter>,
    pub mirror_seconds: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    pub reads: Family<ReadLabels, Counter>,
    pub read_seconds: Family<OriginLabels, Histogram, fn() -> Histogram>,
    pub shadow_mismatches: Counter,
    /// The circuit breaker: 0 closed, 1 open, 2 half-open (set when rendered).
    pub breaker_state: Gauge,
    /// Times the breaker opened.
    pub breaker_opens: Counter,
    /// Also write CloudWatch EMF lines (in Lambda).
    emf: bool,
}

impl Default for MigrationMetrics {
    fn default() -> Self {
        Self::new(false)
    }
}

impl MigrationMetrics {
    pub fn new(emf: bool) -> Self {
        let mut registry = Registry::with_prefix("imgsvc_migration");
        let mirrors = Family::<OutcomeLabels, Counter>::default();
        let mirror_seconds =
            Family::<OutcomeLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let reads = Family::<ReadLabels, Counter>::default();
        let read_seconds =
            Family::<OriginLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let shadow_mismatches = Counter::default();
        let breaker_state = Gauge::default();
        let breaker_opens = Counter::default();
        registry.register(
            "breaker_state",
            "The Image Service circuit breaker: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        registry.register(
            "breaker_opens",
            "Times the Image Service circuit breaker opened",
            breaker_opens.clone(),
        );
        registry.register(
            "mirrors",
            "Mirror writes to the Image Service by outcome",
            mirrors.clone(),
        );
        registry.register(
            "mirror_seconds",
            "Latency of mirror writes",
            mirror_seconds.clone(),
        );
        registry.register(
            "reads",
            "Gallery reads by origin and outcome",
            reads.clone(),
        );
        registry.register(
            "read_seconds",
            "Latency of gallery reads by origin",
            read_seconds.clone(),
        );
        registry.register(
            "shadow_mismatches",
            "Shadow reads whose Image Service result differed from the legacy one",
            shadow_mismatches.clone(),
        );
        MigrationMetrics {
            registry,
            mirrors,
            mirror_seconds,
            reads,
            read_seconds,
            shadow_mismatches,
            breaker_state,
            breaker_opens,
            emf,
        }
    }
    pub fn mirror(&self, outcome: &str, seconds: f64) {
        let labels = OutcomeLabels {
            outcome: outcome.to_owned(),
        };
        self.mirrors.get_or_create(&labels).inc();
        self.mirror_seconds.get_or_create(&labels).observe(seconds);
        if self.emf {
            let ok = matches!(outcome, "success" | "drained");
            crate::telemetry::emit_emf(
                &[(
                    "Origin",
                    if outcome.starts_with("drain") {
                        "drain"
                    } else {
                        "request"
                    },
                )],
                &[
                    ("DualWriteSuccess", f64::from(u8::from(ok)), "Count"),
                    ("DualWriteFailure", f64::from(u8::from(!ok)), "Count"),
                    ("DualWriteLatency", seconds * 1000.0, "Milliseconds"),
                ],
            );
        }
    }

    pub fn read(&self, origin: &str, outcome: &str, seconds: f64) {
        self.reads
            .get_or_create(&ReadLabels {
                origin: origin.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.read_seconds
            .get_or_create(&OriginLabels {
                origin: origin.to_owned(),
            })
            .observe(seconds);
        if self.emf && origin == "image_service" {
            let fell_back = outcome != "ok";
            crate::telemetry::emit_emf(
                &[("Outcome", outcome)],
                &[
                    ("ReadImageService", 1.0, "Count"),
                    ("ReadFallback", f64::from(u8::from(fell_back)), "Count"),
                ],
            );
        }
    }

    /// The Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counter values as JSON: `{"mirrors": {"success": n, …}, "reads": {"image_service/ok": n, …}}`.
    pub fn counts(&self) -> Value {
        let mut mirrors = Map::new();
        for outcome in ["success", "failure", "skipped", "drained", "drain_failure"] {
            let n = self
                .mirrors
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.to_owned(),
                })
                .get();
            mirrors.insert(outcome.to_owned(), json!(n));
        }
        let mut reads = Map::new();
        for origin in ["image_service", "legacy"] {
            for outcome in ["ok", "timeout", "error", "missing", "breaker_open"] {
                let n = self
                    .reads
                    .get_or_create(&ReadLabels {
                        origin: origin.to_owned(),
                        outcome: outcome.to_owned(),
                    })
                    .get();
                if n > 0 {
                    reads.insert(format!("{origin}/{outcome}"), json!(n));
                }
            }
        }
        json!({
            "mirrors": mirrors,
            "reads": reads,
            "shadowMismatches": self.shadow_mismatches.get(),
        })
    }
}

//! The legacy gallery's moving parts during the migration, and its read routing: read from
//! the Image Service when the rollout flags route a user there (with the timeout and the
//! circuit breaker), else — or on timeout, error, or a missing answer — from PostgreSQL;
//! shadow mode reads both, serves the legacy answer and counts differences. The HTTP side
//! is `api::gallery`.

use std::sync::Arc;
use std::time::Instant;

use super::breaker::Permit;
use super::flags::{FlagSource, Flags};
use super::legacy::LegacyStore;
use super::metrics::MigrationMetrics;
use super::mirror::Mirror;
use crate::store::StoreError;

/// The migration's moving parts, present when a legacy database is configured.
pub struct Gallery {
    pub legacy: Arc<dyn LegacyStore>,
    pub mirror: Arc<Mirror>,
    pub flags: Arc<dyn FlagSource>,
    pub metrics: Arc<MigrationMetrics>,
}

/// Why the Image Service gave no answer to a routed read.
enum Unanswered {
    Timeout,
    BreakerOpen,
}

/// Read from the Image Service when the flags route this user there (with the timeout),
/// else — or on timeout, error, or a missing answer — from PostgreSQL. Shadow mode reads
/// both, serves the legacy answer and counts differences.
pub async fn routed_read<T, FI, FL>(
    gallery: &Gallery,
    flags: &Flags,
    user_id: &str,
    operation: &'static str,
    image_service: FI,
    legacy: FL,
    same: impl Fn(&T, &T) -> bool,
) -> Result<Option<T>, StoreError>
where
    FI: std::future::Future<Output = Result<Option<T>, StoreError>>,
    FL: std::future::Future<Output = Result<Option<T>, StoreError>>,
{
    let routed = flags.reads_from_image_service(user_id);
    let breaker = &gallery.mirror.breaker;
    if routed || flags.shadow_reads {
        let started = Instant::now();
        // While the breaker is open the Image Service is not asked: the read falls back at
        // once instead of paying the timeout.
        let result = if breaker.permit(started, flags.breaker()) == Permit::Skip {
            Err(Unanswered::BreakerOpen)
        } else {
            let result = tokio::time::timeout(flags.read_timeout, image_service)
                .await
                .map_err(|_| Unanswered::Timeout);
            match &result {
                Ok(Ok(_)) => breaker.succeeded(),
                Ok(Err(_)) | Err(_) => gallery.mirror.breaker_failed(flags.breaker()),
            }
            result
        };
        let seconds = started.elapsed().as_secs_f64();
        let reason = match &result {
            Err(Unanswered::BreakerOpen) => "breaker_open",
            Err(Unanswered::Timeout) => "timeout",
            Ok(Err(_)) => "error",
            Ok(Ok(None)) => "missing",
            Ok(Ok(Some(_))) => "ok",
        };
        gallery.metrics.read("image_service", reason, seconds);
        if routed {
            tracing::info!(userId = %user_id, operation, route = "image_service", outcome = reason, latencyMs = seconds * 1000.0, "read routed");
            if let Ok(Ok(Some(found))) = result {
                return Ok(Some(found));
            }
            tracing::warn!(userId = %user_id, operation, reason, "Image Service read failed, falling back to PostgreSQL");
        } else {
            let started = Instant::now();
            let legacy_answer = legacy.await?;
            gallery
                .metrics
                .read("legacy", "ok", started.elapsed().as_secs_f64());
            let agrees = match (&legacy_answer, &result) {
                (Some(a), Ok(Ok(Some(b)))) => same(a, b),
                (None, Ok(Ok(None))) => true,
                _ => false,
            };
            if !agrees {
                gallery.metrics.shadow_mismatches.inc();
                tracing::warn!(userId = %user_id, operation, imageServiceOutcome = reason, "shadow read mismatch");
            }
            return Ok(legacy_answer);
        }
    }
    let started = Instant::now();
    let answer = legacy.await?;
    gallery
        .metrics
        .read("legacy", "ok", started.elapsed().as_secs_f64());
    if !routed {
        tracing::debug!(userId = %user_id, operation, route = "legacy", "read routed");
    }
    Ok(answer)
}

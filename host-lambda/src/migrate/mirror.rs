//! Mirroring gallery changes to the Image Service: right after the PostgreSQL commit, and
//! from the outbox (with exponential backoff) for whatever did not land.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;

use super::breaker::{BreakerSettings, CircuitBreaker, Permit};
use super::legacy::{LegacyStore, OutboxEntry};
use super::mapping::record_of;
use super::metrics::MigrationMetrics;
use crate::store::{MetadataStore, StoreError};

/// What a sync did to the Image Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    /// The record was written (new, or newer than what was there).
    Written,
    /// The Image Service already held this version or a newer one.
    AlreadyCurrent,
    /// The row is gone, so the record was removed (replaced by the row's tombstone).
    Deleted,
}

pub struct Mirror {
    pub legacy: Arc<dyn LegacyStore>,
    pub target: Arc<dyn MetadataStore>,
    /// Base of the URLs in mirrored records (the CDN).
    pub public_base_url: String,
    pub metrics: Arc<MigrationMetrics>,
    /// Shared with the gallery's routed reads: an unreachable Image Service is skipped.
    pub breaker: Arc<CircuitBreaker>,
}

/// When to try an entry again after `attempts` failures: exponential from 1 s, capped at
/// 5 min, with jitter so a recovering Image Service isn't hit by every entry at once.
pub fn retry_delay(attempts: i32) -> Duration {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(300))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(usize::try_from(attempts.max(0)).unwrap_or(0))
        .unwrap_or(Duration::from_secs(300))
}

impl Mirror {
    /// Make the Image Service agree with the legacy row as it is now. Reading the row
    /// (rather than carrying a snapshot) makes a sync idempotent and order-free; the
    /// version condition means an older row never overwrites a newer record.
    pub async fn sync(&self, image_id: &str) -> Result<Synced, StoreError> {
        match self.legacy.get(image_id).await? {
            Some(row) => {
                let record = record_of(&row, &self.public_base_url);
                if self.target.put_if_newer(&record).await? {
                    Ok(Synced::Written)
                } else {
                    Ok(Synced::AlreadyCurrent)
                }
            }
            None => {
                // The delete's own version goes along, so a copy of the row that is still
                // on its way (a slower mirror, a backfill) can't bring the record back.
                match self.legacy.tombstone(image_id).await? {
                    Some(tombstone) => {
                        self.target.put_tombstone_if_newer(&tombstone).await?;
                    }
                    // Removed by hand, outside the gallery: no version to keep.
                    None => self.target.delete(image_id).await?,
                }
                Ok(Synced::Deleted)
            }
        }
    }

    /// Report a failed Image Service call to the breaker (shared with the routed reads).
    pub fn breaker_failed(&self, settings: BreakerSettings) {
        if self.breaker.failed(Instant::now(), settings) {
            self.metrics.breaker_opens.inc();
            tracing::error!(
                cooldownMs = settings.cooldown.as_millis() as u64,
                "Image Service circuit breaker opened: dual-write and routed reads skip it"
            );
        }
    }

    /// Mirror one committed change now, within `timeout`. Never fails the caller: a miss
    /// stays in the outbox for the drain, and is logged with its context.
    ///
    /// While the circuit breaker is open the sync is skipped at once: the entry stays due
    /// in the outbox for the drain.
    pub async fn mirror_now(
        &self,
        entry: &OutboxEntry,
        timeout: Duration,
        breaker: BreakerSettings,
    ) {
        let started = Instant::now();
        if self.breaker.permit(started, breaker) == Permit::Skip {
            self.metrics.mirror("skipped", 0.0);
            tracing::warn!(imageId = %entry.image_id, "DynamoDB dual-write skipped: circuit breaker open; left to the outbox");
            return;
        }
        let result = match tokio::time::timeout(timeout, self.sync(&entry.image_id)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "timed out after {} ms",
                timeout.as_millis()
            ))),
        };
        let seconds = started.elapsed().as_secs_f64();
        match &result {
            Ok(_) => self.breaker.succeeded(),
            Err(_) => self.breaker_failed(breaker),
        }
        match result {
            Ok(synced) => {
                self.metrics.mirror("success", seconds);
                tracing::info!(imageId = %entry.image_id, ?synced, latencyMs = seconds * 1000.0, "DynamoDB dual-write successful");
                if let Err(error) = self.legacy.mirrored(entry).await {
                    // The outbox entry stays; the drain's sync will find it current.
                    tracing::warn!(imageId = %entry.image_id, %error, "could not clear the outbox entry");
                }
            }
            Err(error) => {
                self.metrics.mirror("failure", seconds);
                tracing::error!(imageId = %entry.image_id, %error, latencyMs = seconds * 1000.0, "DynamoDB dual-write failed");
                let delay = retry_delay(entry.attempts);
                if let Err(error) = self
                    .legacy
                    .mirror_failed(entry, delay, &error.to_string())
                    .await
                {
                    tracing::warn!(imageId = %entry.image_id, %error, "could not reschedule the outbox entry");
                }
            }
        }
    }

    /// One pass over the due outbox entries (up to `limit`; with `include_waiting`, also
    /// those still waiting out their backoff). Returns (landed, failed).
    pub async fn drain_once(
        &self,
        limit: usize,
        include_waiting: bool,
    ) -> Result<(usize, usize), StoreError> {
        let due = self.legacy.due_mirrors(limit, include_waiting).await?;
        let (mut landed, mut failed) = (0, 0);
        for entry in due {
            let started = Instant::now();
            match self.sync(&entry.image_id).await {
                Ok(synced) => {
                    self.metrics
                        .mirror("drained", started.elapsed().as_secs_f64());
                    tracing::info!(imageId = %entry.image_id, ?synced, attempts = entry.attempts, "DynamoDB dual-write drained");
                    self.legacy.mirrored(&entry).await?;
                    landed += 1;
                }
                Err(error) => {
                    self.metrics
                        .mirror("drain_failure", started.elapsed().as_secs_f64());
                    let delay = retry_delay(entry.attempts + 1);
                    tracing::warn!(imageId = %entry.image_id, %error, attempts = entry.attempts + 1, retryInMs = delay.as_millis() as u64, "DynamoDB dual-write retry failed");
                    self.legacy
                        .mirror_failed(&entry, delay, &error.to_string())
                        .await?;
                    failed += 1;
                }
            }
        }
        Ok((landed, failed))
    }

    /// Drain until the outbox has nothing due (used by `imgsvc migrate drain`; with
    /// `include_waiting`, every entry is tried once, due or not).
    pub async fn drain_all(
        &self,
        batch: usize,
        include_waiting: bool,
    ) -> Result<(usize, usize), StoreError> {
        let (mut landed, mut failed) = (0, 0);
        loop {
            // Entries that fail are rescheduled, so a retry-all pass ends with them.
            let (l, f) = self
                .drain_once(batch, include_waiting && failed == 0)
                .await?;
            landed += l;
            failed += f;
            if l + f < batch || l == 0 {
                return Ok((landed, failed));
            }
        }
    }

    /// The background drain of `serve`: a pass every `interval`, forever. While the
    /// breaker is open a pass is skipped; after the cool-down a pass that lands closes it.
    pub async fn run_drain(
        self: Arc<Self>,
        interval: Duration,
        flags: Arc<dyn super::flags::FlagSource>,
    ) {
        loop {
            let settings = flags.current().breaker();
            if !self.breaker.is_open(Instant::now(), settings) {
                match self.drain_once(100, false).await {
                    Ok((0, 0)) => {}
                    Ok((_, 0)) => self.breaker.succeeded(),
                    Ok(_) => self.breaker_failed(settings),
                    Err(error) => {
                        self.breaker_failed(settings);
                        tracing::warn!(%error, "outbox drain pass failed");
                    }
                }
            }
            tokio::time::sleep(interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_are_capped() {
        let first = retry_delay(0);
        assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2));
        let later = retry_delay(5);
        assert!(later >= Duration::from_secs(32), "{later:?}");
        assert!(retry_delay(50) <= Duration::from_secs(600));
    }
}

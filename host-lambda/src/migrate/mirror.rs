//! Mirroring gallery changes to the Image Service: right after the PostgreSQL commit, and
//! from the outbox (with exponential backoff) for whatever did not land.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;

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
    /// The row is gone, so the record was removed.
    Deleted,
}

pub struct Mirror {
    pub legacy: Arc<dyn LegacyStore>,
    pub target: Arc<dyn MetadataStore>,
    /// Base of the URLs in mirrored records (the CDN).
    pub public_base_url: String,
    pub metrics: Arc<MigrationMetrics>,
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
                self.target.delete(image_id).await?;
                Ok(Synced::Deleted)
            }
        }
    }

    /// Mirror one committed change now, within `timeout`. Never fails the caller: a miss
    /// stays in the outbox for the drain, and is logged with its context.
    pub async fn mirror_now(&self, entry: &OutboxEntry, timeout: Duration) {
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, self.sync(&entry.image_id)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "timed out after {} ms",
                timeout.as_millis()
            ))),
        };
        let seconds = started.elapsed().as_secs_f64();
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

    /// One pass over the due outbox entries (up to `limit`). Returns (landed, failed).
    pub async fn drain_once(&self, limit: usize) -> Result<(usize, usize), StoreError> {
        let due = self.legacy.due_mirrors(limit).await?;
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

    /// Drain until the outbox has nothing due (used by `imgsvc migrate drain`).
    pub async fn drain_all(&self, batch: usize) -> Result<(usize, usize), StoreError> {
        let (mut landed, mut failed) = (0, 0);
        loop {
            let (l, f) = self.drain_once(batch).await?;
            landed += l;
            failed += f;
            if l + f < batch || l == 0 {
                return Ok((landed, failed));
            }
        }
    }

    /// The background drain of `serve`: a pass every `interval`, forever.
    pub async fn run_drain(self: Arc<Self>, interval: Duration) {
        loop {
            if let Err(error) = self.drain_once(100).await {
                tracing::warn!(%error, "outbox drain pass failed");
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

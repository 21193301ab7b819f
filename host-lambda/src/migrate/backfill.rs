//! `backfill`: copy every legacy row into the Image Service, in id order and in batches,
//! checkpointing after each batch so a killed run resumes where it stopped; then apply the
//! deletes PostgreSQL remembers, so no record outlives its deleted row.
//!
//! DynamoDB's BatchWriteItem takes no conditions, and an unconditional copy could overwrite
//! a record dual-write already wrote at a newer version. So each row is written with the
//! same version condition as the mirror (`put_if_newer`), a batch's writes in flight
//! together; throttled or failed writes are retried with exponential backoff and jitter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures_util::future::join_all;
use serde::Serialize;

use super::legacy::{Checkpoint, LegacyStore};
use super::mapping::record_of;
use crate::store::{MetadataStore, StoreError};

/// The checkpoint's name in `migration_checkpoints`.
pub const CHECKPOINT: &str = "backfill";

#[derive(Debug, Clone)]
pub struct BackfillOptions {
    pub batch_size: usize,
    /// Rows per second at most (`None`: as fast as the stores allow).
    pub rate: Option<f64>,
    /// Count and map, write nothing (and keep no checkpoint).
    pub dry_run: bool,
    /// Start after the saved checkpoint instead of from the first row.
    pub resume: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillReport {
    pub resumed_after: Option<String>,
    pub scanned: u64,
    pub written: u64,
    /// Rows whose record was already there at the same or a newer version.
    pub already_current: u64,
    /// Deletes PostgreSQL remembers (tombstones) applied to the Image Service: records of
    /// rows deleted while nothing was mirrored.
    pub deletes_applied: u64,
    pub batches: u64,
    pub seconds: f64,
}

impl BackfillReport {
    pub fn rows_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.scanned as f64 / self.seconds
        } else {
            0.0
        }
    }
}

fn retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .with_max_times(8)
}

pub async fn backfill(
    legacy: &Arc<dyn LegacyStore>,
    target: &Arc<dyn MetadataStore>,
    public_base_url: &str,
    options: &BackfillOptions,
    mut progress: impl FnMut(&BackfillReport),
) -> Result<BackfillReport, StoreError> {
    let started = Instant::now();
    let mut report = BackfillReport::default();
    let mut copied = 0;
    let mut after = None;
    if options.resume {
        if let Some(checkpoint) = legacy.checkpoint(CHECKPOINT).await? {
            copied = checkpoint.copied;
            after = Some(checkpoint.last_id);
        }
    } else if !options.dry_run {
        legacy.clear_checkpoint(CHECKPOINT).await?;
    }
    report.resumed_after.clone_from(&after);
    let batch_size = options.batch_size.max(1);
    loop {
        let batch_started = Instant::now();
        let rows = legacy.scan(after.as_deref(), None, batch_size).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = Some(last.id.clone());
        report.scanned += rows.len() as u64;
        report.batches += 1;
        if !options.dry_run {
            let writes = rows.iter().map(|row| {
                let record = record_of(row, public_base_url);
                let target = target.clone();
                async move {
                    (|| async { target.put_if_newer(&record).await })
                        .retry(retry_policy())
                        .when(|e| matches!(e, StoreError::Unavailable(_)))
                        .await
                }
            });
            for written in join_all(writes).await {
                if written? {
                    report.written += 1;
                } else {
                    report.already_current += 1;
                }
            }
            copied += i64::try_from(rows.len()).unwrap_or(0);
            legacy
                .save_checkpoint(
                    CHECKPOINT,
                    &Checkpoint {
                        last_id: last.id.clone(),
                        copied,
                    },
                )
                .await?;
        }
        report.seconds = started.elapsed().as_secs_f64();
        progress(&report);
        if let Some(rate) = options.rate.filter(|r| *r > 0.0) {
            let budget = Duration::from_secs_f64(rows.len() as f64 / rate);
            if let Some(wait) = budget.checked_sub(batch_started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    // Then the deletes: a row deleted while dual-write was off left only its tombstone,
    // and its record must not outlive it. Tombstones are few; the pass is always whole.
    let mut after: Option<String> = None;
    loop {
        let tombstones = legacy.scan_tombstones(after.as_deref(), batch_size).await?;
        let Some(last) = tombstones.last() else {
            break;
        };
        after = Some(last.id.clone());
        if options.dry_run {
            continue;
        }
        for tombstone in &tombstones {
            let applied = (|| async { target.put_tombstone_if_newer(tombstone).await })
                .retry(retry_policy())
                .when(|e| matches!(e, StoreError::Unavailable(_)))
                .await?;
            report.deletes_applied += u64::from(applied);
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

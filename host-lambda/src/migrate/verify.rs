//! `verify`: every legacy row (or those changed since a moment) compared field by field
//! with its Image Service record, in batches.

use std::sync::Arc;

use futures_util::future::join_all;
use serde::Serialize;
use time::OffsetDateTime;

use super::legacy::LegacyStore;
use super::mapping::{FieldMismatch, compare};
use crate::store::{MetadataStore, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub id: String,
    pub fields: Vec<FieldMismatch>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub total: u64,
    pub matched: u64,
    pub missing: Vec<String>,
    pub mismatched: Vec<Mismatch>,
    /// Records in the Image Service with no legacy row (full runs only).
    pub only_in_image_service: Vec<String>,
}

impl VerifyReport {
    pub fn success_rate(&self) -> f64 {
        if self.total == 0 {
            return 100.0;
        }
        self.matched as f64 * 100.0 / self.total as f64
    }

    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.mismatched.is_empty()
            && self.only_in_image_service.is_empty()
    }
}

/// Compare rows in id order, `batch` at a time (their records fetched concurrently);
/// `progress` is called after each batch with the running report.
pub async fn verify(
    legacy: &Arc<dyn LegacyStore>,
    target: &Arc<dyn MetadataStore>,
    since: Option<OffsetDateTime>,
    batch: usize,
    mut progress: impl FnMut(&VerifyReport),
) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut after: Option<String> = None;
    loop {
        let rows = legacy.scan(after.as_deref(), since, batch).await?;
        let Some(last) = rows.last() else {
            if since.is_none() {
                report.only_in_image_service = only_in_image_service(legacy, target, batch).await?;
            }
            return Ok(report);
        };
        after = Some(last.id.clone());
        let records = join_all(rows.iter().map(|row| target.get(&row.id))).await;
        for (row, record) in rows.iter().zip(records) {
            report.total += 1;
            match record? {
                None => report.missing.push(row.id.clone()),
                Some(record) => {
                    let fields = compare(row, &record);
                    if fields.is_empty() {
                        report.matched += 1;
                    } else {
                        report.mismatched.push(Mismatch {
                            id: row.id.clone(),
                            fields,
                        });
                    }
                }
            }
        }
        progress(&report);
    }
}

/// Ids of Image Service records that have no legacy row.
async fn only_in_image_service(
    legacy: &Arc<dyn LegacyStore>,
    target: &Arc<dyn MetadataStore>,
    batch: usize,
) -> Result<Vec<String>, StoreError> {
    let mut extra = Vec::new();
    let mut start = None;
    loop {
        let (records, next) = target.scan(start, batch.max(1)).await?;
        let ids: Vec<String> = records.into_iter().map(|r| r.id).collect();
        if !ids.is_empty() {
            let existing = legacy.existing_ids(&ids).await?;
            extra.extend(ids.into_iter().filter(|id| !existing.contains(id)));
        }
        match next {
            Some(next) => start = Some(next),
            None => return Ok(extra),
        }
    }
}

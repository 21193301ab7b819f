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
    /// Rows whose record the Image Service deleted (its tombstone is as new or newer): the
    /// image was deleted after cutover; `reconcile` (or `reverse`) removes the row.
    pub deleted_in_image_service: Vec<String>,
    /// Records in the Image Service with no legacy row (with `since`: those updated since).
    pub only_in_image_service: Vec<String>,
    /// Records in the Image Service whose row PostgreSQL deleted (`reconcile` removes them).
    pub deleted_in_postgres: Vec<String>,
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
            && self.deleted_in_image_service.is_empty()
            && self.only_in_image_service.is_empty()
            && self.deleted_in_postgres.is_empty()
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
            let since = since.map(crate::record::iso8601);
            (report.only_in_image_service, report.deleted_in_postgres) =
                only_in_image_service(legacy, target, since.as_deref(), batch).await?;
            return Ok(report);
        };
        after = Some(last.id.clone());
        let records = join_all(rows.iter().map(|row| target.get(&row.id))).await;
        for (row, record) in rows.iter().zip(records) {
            report.total += 1;
            match record? {
                None => match target.tombstone(&row.id).await? {
                    Some(tombstone)
                        if i64::try_from(tombstone.version).unwrap_or(i64::MAX) >= row.version =>
                    {
                        report.deleted_in_image_service.push(row.id.clone());
                    }
                    _ => report.missing.push(row.id.clone()),
                },
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

/// Ids of Image Service records (updated at or after `since`, when given) that have no
/// legacy row: those never in PostgreSQL, and those PostgreSQL deleted.
async fn only_in_image_service(
    legacy: &Arc<dyn LegacyStore>,
    target: &Arc<dyn MetadataStore>,
    since: Option<&str>,
    batch: usize,
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let (mut extra, mut deleted) = (Vec::new(), Vec::new());
    let mut start = None;
    loop {
        let (records, next) = target.scan(start, batch.max(1)).await?;
        // The timestamps share one format (RFC 3339, milliseconds, UTC): they sort as text.
        let records: Vec<_> = records
            .into_iter()
            .filter(|r| since.is_none_or(|since| r.updated_at.as_str() >= since))
            .collect();
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        if !ids.is_empty() {
            let existing = legacy.existing_ids(&ids).await?;
            for record in records.into_iter().filter(|r| !existing.contains(&r.id)) {
                match legacy.tombstone(&record.id).await? {
                    Some(tombstone) if tombstone.version >= record.version => {
                        deleted.push(record.id);
                    }
                    _ => extra.push(record.id),
                }
            }
        }
        match next {
            Some(next) => start = Some(next),
            None => return Ok((extra, deleted)),
        }
    }
}

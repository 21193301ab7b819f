//! The seeds' PostgreSQL → DynamoDB field mapping, both ways, and the field-by-field
//! comparison `verify` reports. Pure functions.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::legacy::LegacyRow;
use crate::record::{DISPLAY_QUALITY, ImageRecord, iso8601};
use crate::store::StoreError;

/// The Image Service record for a legacy row. What PostgreSQL never stored (thumbnail
/// dimensions, ETags, ThumbHash) stays absent; `uploadedAt` is `created_at`, as in the
/// seeds' backfill; URLs are the CDN base plus the keys.
pub fn record_of(row: &LegacyRow, public_base_url: &str) -> ImageRecord {
    let base = public_base_url.trim_end_matches('/');
    let thumbnail_key = row.thumbnail_s3_key.clone().unwrap_or_default();
    let created = iso8601(row.created_at);
    ImageRecord {
        id: row.id.clone(),
        user_id: row.user_id.clone(),
        album_id: row.album_id.clone(),
        title: row.title.clone(),
        tags: row.tags.clone(),
        original_filename: row.original_filename.clone(),
        mime_type: row.mime_type.clone(),
        size_bytes: u64::try_from(row.size_bytes).unwrap_or(0),
        width: u32::try_from(row.width).unwrap_or(0),
        height: u32::try_from(row.height).unwrap_or(0),
        thumbnail_width: None,
        thumbnail_height: None,
        s3_bucket: row.s3_bucket.clone(),
        image_url: format!("{base}/{}", row.s3_key),
        thumbnail_url: if thumbnail_key.is_empty() {
            String::new()
        } else {
            format!("{base}/{thumbnail_key}")
        },
        s3_key: row.s3_key.clone(),
        thumbnail_key,
        image_etag: None,
        thumbnail_etag: None,
        thumbhash: None,
        processing_status: "completed".to_owned(),
        format: "webp".to_owned(),
        quality: DISPLAY_QUALITY,
        uploaded_at: created.clone(),
        created_at: created,
        updated_at: iso8601(row.updated_at),
        version: u64::try_from(row.version).unwrap_or(1),
    }
}

pub(crate) fn timestamp(field: &str, value: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|e| StoreError::Unavailable(format!("{field} {value:?}: {e}")))
}

/// The legacy row for an Image Service record (the reverse copy, for rollback).
pub fn row_of(record: &ImageRecord) -> Result<LegacyRow, StoreError> {
    let number = |field: &str, value: u64| {
        i64::try_from(value).map_err(|_| StoreError::Unavailable(format!("{field} {value}")))
    };
    let small = |field: &str, value: u32| {
        i32::try_from(value).map_err(|_| StoreError::Unavailable(format!("{field} {value}")))
    };
    Ok(LegacyRow {
        id: record.id.clone(),
        user_id: record.user_id.clone(),
        album_id: record.album_id.clone(),
        title: record.title.clone(),
        tags: record.tags.clone(),
        created_at: timestamp("createdAt", &record.created_at)?,
        updated_at: timestamp("updatedAt", &record.updated_at)?,
        original_filename: record.original_filename.clone(),
        s3_key: record.s3_key.clone(),
        s3_bucket: record.s3_bucket.clone(),
        thumbnail_s3_key: (!record.thumbnail_key.is_empty()).then(|| record.thumbnail_key.clone()),
        mime_type: record.mime_type.clone(),
        size_bytes: number("sizeBytes", record.size_bytes)?,
        width: small("width", record.width)?,
        height: small("height", record.height)?,
        version: number("version", record.version)?,
    })
}

/// One field that differs between the source of truth and the Image Service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldMismatch {
    pub field: &'static str,
    pub legacy: String,
    pub image_service: String,
}

/// An optional field as a report shows it: the value, or `null`.
fn shown(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "null".to_owned())
}

/// Every mapped field of `row` compared with `record` (the seeds' critical fields and the
/// rest of the mapping). Empty when they agree.
pub fn compare(row: &LegacyRow, record: &ImageRecord) -> Vec<FieldMismatch> {
    let expected = record_of(row, "");
    let mut out = Vec::new();
    let mut check = |field: &'static str, legacy: String, image_service: String| {
        if legacy != image_service {
            out.push(FieldMismatch {
                field,
                legacy,
                image_service,
            });
        }
    };
    check("userId", expected.user_id, record.user_id.clone());
    check("s3Key", expected.s3_key, record.s3_key.clone());
    check(
        "originalFilename",
        shown(&expected.original_filename),
        shown(&record.original_filename),
    );
    check("mimeType", expected.mime_type, record.mime_type.clone());
    check(
        "sizeBytes",
        expected.size_bytes.to_string(),
        record.size_bytes.to_string(),
    );
    check(
        "albumId",
        shown(&expected.album_id),
        shown(&record.album_id),
    );
    check("title", shown(&expected.title), shown(&record.title));
    check("tags", expected.tags.join(","), record.tags.join(","));
    check("s3Bucket", expected.s3_bucket, record.s3_bucket.clone());
    check(
        "thumbnailKey",
        expected.thumbnail_key,
        record.thumbnail_key.clone(),
    );
    check(
        "width",
        expected.width.to_string(),
        record.width.to_string(),
    );
    check(
        "height",
        expected.height.to_string(),
        record.height.to_string(),
    );
    check("createdAt", expected.created_at, record.created_at.clone());
    check("updatedAt", expected.updated_at, record.updated_at.clone());
    check(
        "version",
        expected.version.to_string(),
        record.version.to_string(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> LegacyRow {
        LegacyRow {
            id: "01J0000000000000000000000A".into(),
            user_id: "alice".into(),
            album_id: Some("summer".into()),
            title: Some("Beach".into()),
            tags: vec!["sea".into(), "sun".into()],
            created_at: timestamp("c", "2026-01-02T03:04:05.678Z").unwrap(),
            updated_at: timestamp("u", "2026-01-03T03:04:05.000Z").unwrap(),
            original_filename: Some("beach.jpg".into()),
            s3_key: "images/alice/01J0000000000000000000000A.webp".into(),
            s3_bucket: "gallery".into(),
            thumbnail_s3_key: Some(
                "images/alice/thumbnails/01J0000000000000000000000A.webp".into(),
            ),
            mime_type: "image/jpeg".into(),
            size_bytes: 123_456,
            width: 2048,
            height: 1365,
            version: 3,
        }
    }

    #[test]
    fn rows_map_to_records_and_back() {
        let record = record_of(&row(), "https://cdn.example/");
        assert_eq!(record.created_at, "2026-01-02T03:04:05.678Z");
        assert_eq!(record.uploaded_at, record.created_at);
        assert_eq!(
            record.image_url,
            "https://cdn.example/images/alice/01J0000000000000000000000A.webp"
        );
        assert_eq!(record.version, 3);
        assert_eq!(row_of(&record).unwrap(), row());
        assert!(compare(&row(), &record).is_empty());
    }

    #[test]
    fn every_mapped_field_is_compared() {
        let record = record_of(&row(), "");
        let mut changed = record.clone();
        changed.user_id = "bob".into();
        changed.size_bytes = 1;
        changed.tags = vec![];
        changed.version = 4;
        let fields: Vec<_> = compare(&row(), &changed).iter().map(|m| m.field).collect();
        assert_eq!(fields, ["userId", "sizeBytes", "tags", "version"]);
    }

    #[test]
    fn a_report_shows_optional_fields_as_values() {
        let mut changed = record_of(&row(), "");
        changed.album_id = None;
        changed.title = Some("Other".into());
        let found = compare(&row(), &changed);
        let shown: Vec<_> = found
            .iter()
            .map(|m| (m.field, m.legacy.as_str(), m.image_service.as_str()))
            .collect();
        assert_eq!(
            shown,
            [("albumId", "summer", "null"), ("title", "Beach", "Other")]
        );
    }
}

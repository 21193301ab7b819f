//! The image record (the seeds' DynamoDB item) and the pure rules around it.

use serde::{Deserialize, Serialize};

/// Display quality recorded with every image (the seeds' `quality: 85`).
pub const DISPLAY_QUALITY: u8 = 85;

/// One uploaded image. Field names are the seeds' DynamoDB attribute names; the SQLite
/// adapter stores exactly this document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// ULID: sortable by creation time.
    pub id: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub album_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_filename: Option<String>,
    /// MIME type of the upload as sniffed (not as claimed by the client).
    pub mime_type: String,
    /// Size of the upload in bytes.
    pub size_bytes: u64,
    /// Display image dimensions.
    pub width: u32,
    pub height: u32,
    /// Thumbnail dimensions, ETags and ThumbHash are absent on records migrated from the
    /// legacy gallery, which never stored them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_height: Option<u32>,
    pub s3_bucket: String,
    pub s3_key: String,
    pub thumbnail_key: String,
    pub image_url: String,
    pub thumbnail_url: String,
    /// Strong ETags of the stored objects (quoted hex MD5, as S3 computes them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_etag: Option<String>,
    /// ThumbHash placeholder, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbhash: Option<String>,
    pub processing_status: String,
    pub format: String,
    pub quality: u8,
    pub created_at: String,
    pub updated_at: String,
    pub uploaded_at: String,
    /// Starts at 1; every successful update increments it.
    pub version: u64,
}

/// Object keys of an image: the seeds' layout.
pub fn display_key(user_id: &str, image_id: &str) -> String {
    format!("images/{user_id}/{image_id}.webp")
}

pub fn thumbnail_key(user_id: &str, image_id: &str) -> String {
    format!("images/{user_id}/thumbnails/{image_id}.webp")
}

/// Strong ETag of stored bytes: the quoted hex MD5 — exactly what S3 (and so CloudFront)
/// returns for a single-part object, so the record, the local server and the CDN agree.
pub fn etag_of(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    let digest = Md5::digest(bytes);
    let mut hex = String::with_capacity(34);
    hex.push('"');
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex.push('"');
    hex
}

/// The clock, read once per change, as a record timestamp (`iso8601`).
pub fn now() -> String {
    iso8601(time::OffsetDateTime::now_utc())
}

/// Timestamps as JavaScript's `toISOString()` writes them (the seeds' format), so records
/// sort correctly as strings: `2026-11-23T12:34:56.789Z`.
pub fn iso8601(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// The user-editable fields, as validated from a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Editable {
    pub album_id: Option<Option<String>>,
    pub title: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
}

impl ImageRecord {
    /// The record after an update: edited fields replaced, version bumped, `updated_at` set.
    #[must_use]
    pub fn edited(&self, edit: &Editable, now: &str) -> ImageRecord {
        let mut next = self.clone();
        if let Some(album_id) = &edit.album_id {
            next.album_id = album_id.clone();
        }
        if let Some(title) = &edit.title {
            next.title = title.clone();
        }
        if let Some(tags) = &edit.tags {
            next.tags = tags.clone();
        }
        next.version = self.version + 1;
        next.updated_at = now.to_owned();
        next
    }
}

/// Why user-supplied metadata was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{field} must be at most {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} contains characters that are not allowed")]
    BadCharacters { field: &'static str },
    #[error("at most {max} tags are allowed")]
    TooManyTags { max: usize },
}

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_CHARS: usize = 50;
/// Entries of a tag list before trimming and de-duplication (see `validate_tags`).
pub const MAX_TAG_ENTRIES: usize = 100;
pub const MAX_ID_CHARS: usize = 128;

/// A title: trimmed, no control characters, at most 200 characters; empty means none.
pub fn validate_title(raw: &str) -> Result<Option<String>, FieldError> {
    let title = raw.trim();
    if title.chars().any(char::is_control) {
        return Err(FieldError::BadCharacters { field: "title" });
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(FieldError::TooLong {
            field: "title",
            max: MAX_TITLE_CHARS,
        });
    }
    Ok((!title.is_empty()).then(|| title.to_owned()))
}

/// Tags: trimmed, empty ones dropped, duplicates removed (first kept), each at most 50
/// characters, at most 20. Linear, and it stops at the first entry past a limit: the 21st
/// distinct tag, or the 101st entry of any kind (empties and duplicates are forgiven only up
/// to `MAX_TAG_ENTRIES`), so a hostile list costs no more than a valid one.
pub fn validate_tags<'a>(
    raw: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, FieldError> {
    let too_many = FieldError::TooManyTags { max: MAX_TAGS };
    let mut tags: Vec<String> = Vec::new();
    for (entry, tag) in raw.into_iter().enumerate() {
        if entry >= MAX_TAG_ENTRIES {
            return Err(too_many);
        }
        let tag = tag.trim();
        if tag.is_empty() {
            continue;
        }
        if tag.chars().any(char::is_control) {
            return Err(FieldError::BadCharacters { field: "tags" });
        }
        if tag.chars().count() > MAX_TAG_CHARS {
            return Err(FieldError::TooLong {
                field: "tags",
                max: MAX_TAG_CHARS,
            });
        }
        // At most 20 kept: a scan of them is cheaper than hashing.
        if !tags.iter().any(|t| t == tag) {
            if tags.len() == MAX_TAGS {
                return Err(too_many);
            }
            tags.push(tag.to_owned());
        }
    }
    Ok(tags)
}

/// An identifier that ends up in object keys and index keys (user ids, album ids): 1–128
/// characters from `[A-Za-z0-9._@|:-]`, never `.` or `..`, so it can't escape a key prefix.
pub fn validate_id(field: &'static str, raw: &str) -> Result<String, FieldError> {
    if raw.is_empty() || raw.len() > MAX_ID_CHARS {
        return Err(FieldError::TooLong {
            field,
            max: MAX_ID_CHARS,
        });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._@|:-".contains(c);
    if !raw.chars().all(allowed) || raw == "." || raw == ".." {
        return Err(FieldError::BadCharacters { field });
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_javascript() {
        let at = time::macros::datetime!(2026-01-02 03:04:05.006 UTC);
        assert_eq!(iso8601(at), "2026-01-02T03:04:05.006Z");
    }

    #[test]
    fn ids_cannot_escape_a_key_prefix() {
        assert!(validate_id("userId", "auth0|abc-123").is_ok());
        for bad in ["", "..", ".", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(validate_id("userId", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags_are_trimmed_deduplicated_and_bounded() {
        assert_eq!(validate_tags([" a ", "b", "a", ""]).unwrap(), ["a", "b"]);
        let many: Vec<String> = (0..21).map(|i| i.to_string()).collect();
        assert!(validate_tags(many.iter().map(String::as_str)).is_err());
        assert!(validate_tags(["x".repeat(51).as_str()]).is_err());
    }

    /// Issue 17 item 1: validation was O(N²) and counted only at the end (64,000 tags: 6.2 s
    /// of CPU). Refused at the 21st distinct tag, or past the raw entry bound, having
    /// looked at no more than that.
    #[test]
    fn long_tag_lists_are_refused_without_reading_them_whole() {
        use std::cell::Cell;
        let seen = Cell::new(0usize);
        let distinct = (0..1_000_000).map(|i| {
            seen.set(seen.get() + 1);
            Box::leak(format!("t{i}").into_boxed_str()) as &str
        });
        assert_eq!(
            validate_tags(distinct.take(50_000)),
            Err(FieldError::TooManyTags { max: MAX_TAGS })
        );
        assert_eq!(seen.get(), MAX_TAGS + 1);
        // The same tag over and over (or empty entries) is bounded by the raw count.
        seen.set(0);
        let repeated = std::iter::repeat_with(|| {
            seen.set(seen.get() + 1);
            "same"
        });
        assert_eq!(
            validate_tags(repeated.take(1_000_000)),
            Err(FieldError::TooManyTags { max: MAX_TAGS })
        );
        assert_eq!(seen.get(), MAX_TAG_ENTRIES + 1);
        // Up to the bound, duplicates and empties are still forgiven.
        let mut forgiven = vec!["a"; MAX_TAG_ENTRIES - 1];
        forgiven.push("b");
        assert_eq!(validate_tags(forgiven).unwrap(), ["a", "b"]);
    }

    #[test]
    fn edits_bump_the_version() {
        let record = ImageRecord {
            id: "1".into(),
            user_id: "u".into(),
            album_id: None,
            title: Some("old".into()),
            tags: vec![],
            original_filename: None,
            mime_type: "image/jpeg".into(),
            size_bytes: 1,
            width: 1,
            height: 1,
            thumbnail_width: Some(400),
            thumbnail_height: Some(400),
            s3_bucket: "b".into(),
            s3_key: "k".into(),
            thumbnail_key: "t".into(),
            image_url: "u".into(),
            thumbnail_url: "u".into(),
            image_etag: Some("e".into()),
            thumbnail_etag: Some("e".into()),
            thumbhash: Some("h".into()),
            processing_status: "completed".into(),
            format: "webp".into(),
            quality: 85,
            created_at: "c".into(),
            updated_at: "c".into(),
            uploaded_at: "c".into(),
            version: 3,
        };
        let edit = Editable {
            title: Some(None),
            tags: Some(vec!["new".into()]),
            ..Editable::default()
        };
        let next = record.edited(&edit, "now");
        assert_eq!(next.version, 4);
        assert_eq!(next.title, None);
        assert_eq!(next.tags, ["new"]);
        assert_eq!(next.updated_at, "now");
        assert_eq!(next.created_at, "c");
    }
}

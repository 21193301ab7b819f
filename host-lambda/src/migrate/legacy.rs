//! The legacy gallery's port: PostgreSQL's `gallery_images` (the source of truth during the
//! migration), its outbox of pending mirrors and the backfill checkpoints.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::store::{StoreError, Tombstone};

/// One `gallery_images` row, column for column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyRow {
    pub id: String,
    pub user_id: String,
    pub album_id: Option<String>,
    pub title: Option<String>,
    pub tags: Vec<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub original_filename: Option<String>,
    pub s3_key: String,
    pub s3_bucket: String,
    pub thumbnail_s3_key: Option<String>,
    pub mime_type: String,
    pub size_bytes: i64,
    pub width: i32,
    pub height: i32,
    pub version: i64,
}

/// Where a listing page starts: just after this (created_at, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyPosition {
    pub created_at: OffsetDateTime,
    pub id: String,
}

/// A pending mirror: "image `image_id` changed; make the Image Service agree". `seq` is the
/// newest entry for the image covered: a sync that reads the row after `seq` was written
/// covers every entry up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: i64,
    pub image_id: String,
    pub attempts: i32,
}

/// How far a named backfill got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub last_id: String,
    pub copied: i64,
}

/// The legacy gallery. Every write takes `mirror`: when true, an outbox entry for the image
/// is written in the same transaction (and returned), so a committed change can never miss
/// its mirror.
#[async_trait]
pub trait LegacyStore: Send + Sync + 'static {
    /// Create-only: `AlreadyExists` when the id is taken.
    async fn insert(
        &self,
        row: &LegacyRow,
        mirror: bool,
    ) -> Result<Option<OutboxEntry>, StoreError>;
    async fn get(&self, id: &str) -> Result<Option<LegacyRow>, StoreError>;
    /// A user's rows (optionally one album's), newest first by created_at, then id.
    async fn list(
        &self,
        user_id: &str,
        album_id: Option<&str>,
        after: Option<&LegacyPosition>,
        limit: usize,
    ) -> Result<Vec<LegacyRow>, StoreError>;
    /// Replace the row if its version is still `expected_version`.
    async fn update(
        &self,
        row: &LegacyRow,
        expected_version: i64,
        mirror: bool,
    ) -> Result<Option<OutboxEntry>, StoreError>;
    /// Remove the row, leaving a tombstone at its version + 1; a missing row succeeds.
    async fn delete(&self, id: &str, mirror: bool) -> Result<Option<OutboxEntry>, StoreError>;
    /// Write `row` unless the stored row or tombstone has the same or a newer version
    /// (reverse copy and reconcile). True when it wrote.
    async fn put_if_newer(&self, row: &LegacyRow) -> Result<bool, StoreError>;
    /// Record `tombstone` and remove the row, unless the stored row or tombstone has the
    /// same or a newer version (a delete copied from the Image Service). True when it wrote.
    async fn put_tombstone_if_newer(&self, tombstone: &Tombstone) -> Result<bool, StoreError>;
    /// The tombstone of a deleted row, if it was deleted.
    async fn tombstone(&self, id: &str) -> Result<Option<Tombstone>, StoreError>;
    /// Tombstones in id order after `after_id`.
    async fn scan_tombstones(
        &self,
        after_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Tombstone>, StoreError>;

    /// Up to `limit` images with outbox entries due now (or all, with `include_waiting`:
    /// entries still waiting out their backoff too), oldest first.
    async fn due_mirrors(
        &self,
        limit: usize,
        include_waiting: bool,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Entries waiting out their backoff (not due yet), and when the first becomes due.
    async fn waiting_mirrors(&self) -> Result<(i64, Option<OffsetDateTime>), StoreError>;
    /// The sync landed: remove the image's entries up to `entry.seq`.
    async fn mirrored(&self, entry: &OutboxEntry) -> Result<(), StoreError>;
    /// The sync failed: try the image's entries up to `entry.seq` again after `delay`.
    async fn mirror_failed(
        &self,
        entry: &OutboxEntry,
        delay: std::time::Duration,
        error: &str,
    ) -> Result<(), StoreError>;
    /// Entries still pending.
    async fn outbox_depth(&self) -> Result<i64, StoreError>;

    /// Rows in id order after `after_id`, optionally only those updated at or after `since`.
    async fn scan(
        &self,
        after_id: Option<&str>,
        since: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<Vec<LegacyRow>, StoreError>;
    /// How many rows `scan` would go through (for progress).
    async fn count(&self, since: Option<OffsetDateTime>) -> Result<u64, StoreError>;
    /// Whether rows with these ids exist (for records found only in the Image Service).
    async fn existing_ids(&self, ids: &[String]) -> Result<Vec<String>, StoreError>;
    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError>;
    async fn save_checkpoint(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    async fn clear_checkpoint(&self, name: &str) -> Result<(), StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
}

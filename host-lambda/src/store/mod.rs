//! Ports: what the service needs from storage, with no vendor in sight. Adapters: `fs` +
//! `sqlite` (embedded, the default) with `local_staging`, and S3 + DynamoDB.

pub mod aws;
pub mod dynamodb;
pub mod fs;
pub mod local_staging;
pub mod s3;
pub mod sqlite;

use async_trait::async_trait;
use bytes::Bytes;

use crate::record::ImageRecord;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a record with this id already exists")]
    AlreadyExists,
    #[error("version conflict: the current version is {current}")]
    VersionConflict { current: u64 },
    #[error("not found")]
    NotFound,
    #[error("invalid key {0:?}")]
    InvalidKey(String),
    #[error("the object is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// An error with its source chain, which is where the useful part of an SDK's error is
/// (a timeout, a refused connection).
pub(crate) fn describe<E: std::error::Error>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Object storage for the encoded images.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Store `bytes` under `key` (replacing any object there). `content_type` and
    /// `cache_control` are what a CDN will serve.
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        cache_control: &str,
    ) -> Result<(), StoreError>;
    /// The object, or `None`; `TooLarge` (decided from its stored size, before reading
    /// it) when it is larger than `max_bytes`.
    async fn get(&self, key: &str, max_bytes: u64) -> Result<Option<Bytes>, StoreError>;
    /// Remove the object. Removing a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Whether the store answers (for `/health`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Every object whose key starts with `prefix` (a "directory", ending in `/`), in no
    /// particular order: for the sweeps of expired staged originals.
    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StoreError>;
}

/// An object as listed: its key, and when it was last written (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub modified: i64,
}

/// One original a client is allowed to PUT: exactly `size_bytes` of `content_type` to `key`,
/// until `expires_at` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedPut {
    pub key: String,
    pub size_bytes: u64,
    pub content_type: String,
    pub expires_at: i64,
}

/// Where clients send originals in the two-step upload: a short-lived URL bound to one
/// `StagedPut` (a presigned S3 PUT in AWS; a URL to this server, signed by it, locally).
/// The staged object is read back through the `BlobStore`.
#[async_trait]
pub trait UploadStaging: Send + Sync + 'static {
    async fn presign_put(&self, put: &StagedPut) -> Result<String, StoreError>;
}

/// Where a listing page starts: just after this (uploadedAt, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPosition {
    pub uploaded_at: String,
    pub id: String,
}

/// Which images to list.
#[derive(Debug, Clone)]
pub struct ListQuery<'a> {
    pub user_id: &'a str,
    pub album_id: Option<&'a str>,
    pub after: Option<ListPosition>,
    pub limit: usize,
}

/// A deleted record, remembered: the id and the version that deleted it (the record's last
/// version + 1), so an older copy — a late mirror, a backfill, a rollback — can never bring
/// the record back. Kept on both sides of the migration; never listed or returned by `get`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    pub id: String,
    pub version: u64,
    /// When it was deleted (RFC 3339, milliseconds, UTC).
    pub deleted_at: String,
}

/// What an `Idempotency-Key` lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The key was free (or expired) and is now held for this request.
    Reserved,
    /// Another request with this key has not finished yet.
    InProgress { fingerprint: String },
    /// A request with this key finished; its response (JSON) is to be replayed.
    Completed {
        fingerprint: String,
        response: String,
    },
}

impl Reservation {
    /// A live entry as stored: its fingerprint, and its response once the request finished.
    pub fn existing(fingerprint: String, response: Option<String>) -> Reservation {
        match response {
            Some(response) => Reservation::Completed {
                fingerprint,
                response,
            },
            None => Reservation::InProgress { fingerprint },
        }
    }
}

/// The image records, and the idempotency records that guard their creation.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Create-only: `AlreadyExists` when the id is taken.
    async fn create(&self, record: &ImageRecord) -> Result<(), StoreError>;
    async fn get(&self, id: &str) -> Result<Option<ImageRecord>, StoreError>;
    /// Replace the record if its stored version is still `expected_version`; otherwise
    /// `VersionConflict` with the current version (or `NotFound`).
    async fn update(&self, record: &ImageRecord, expected_version: u64) -> Result<(), StoreError>;
    /// Write `record` unless a record or tombstone with this id and the same or a newer
    /// version is stored (the migration's mirror: an older version never overwrites a
    /// newer one, nor brings back a newer delete). True when it wrote.
    async fn put_if_newer(&self, record: &ImageRecord) -> Result<bool, StoreError>;
    /// Remove the record, leaving a tombstone at its version + 1. Removing a missing record
    /// (or one already deleted) succeeds and changes nothing.
    async fn delete(&self, id: &str) -> Result<(), StoreError>;
    /// Replace whatever is stored for the id with `tombstone` unless a record or tombstone
    /// with the same or a newer version is stored (a delete mirrored or copied from the
    /// other side). True when it wrote.
    async fn put_tombstone_if_newer(&self, tombstone: &Tombstone) -> Result<bool, StoreError>;
    /// The tombstone of a deleted record, if it was deleted.
    async fn tombstone(&self, id: &str) -> Result<Option<Tombstone>, StoreError>;
    /// A user's images (optionally one album's), newest first: by uploadedAt, then id.
    async fn list(&self, query: ListQuery<'_>) -> Result<Vec<ImageRecord>, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    /// One page of every record, in no particular order, and where the next page starts
    /// (`None` at the end): for `verify` (records only here) and `reverse`. A page may be
    /// shorter than `limit`, even empty, before the end.
    async fn scan(
        &self,
        start: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ImageRecord>, Option<String>), StoreError>;
    /// The same for tombstones: for `reverse` and `reconcile`.
    async fn scan_tombstones(
        &self,
        start: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Tombstone>, Option<String>), StoreError>;

    /// Hold `(user_id, key)` for a new request unless a live entry exists, in which case
    /// report it. Live at `now`: unexpired, and either completed or still within the lease
    /// of the request holding it — an in-progress entry past its lease was abandoned (its
    /// request died) and is taken over. The entry is kept until `expires_at`; this
    /// request's lease runs until `lease_until`. Atomic: of two racing requests, one
    /// reserves.
    async fn reserve_idempotency(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
        now: i64,
        expires_at: i64,
        lease_until: i64,
    ) -> Result<Reservation, StoreError>;
    /// Record the response of the request holding the key.
    async fn complete_idempotency(
        &self,
        user_id: &str,
        key: &str,
        response: &str,
    ) -> Result<(), StoreError>;
    /// What a live entry (as for `reserve_idempotency`) for the key holds, without
    /// reserving it.
    async fn find_idempotency(
        &self,
        user_id: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<Reservation>, StoreError>;
    /// Free the key after a failed request, so a retry can run.
    async fn release_idempotency(&self, user_id: &str, key: &str) -> Result<(), StoreError>;
}

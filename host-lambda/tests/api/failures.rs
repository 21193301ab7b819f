//! A failed upload leaves nothing behind: failures injected by wrapping the ports, the real stores inspected.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::harness::{Backend, Server, on_both_backends, problem, small_jpeg};
use async_trait::async_trait;
use bytes::Bytes;
use imgsvc_lambda::record::ImageRecord;
use imgsvc_lambda::store::{
    BlobStore, ListQuery, MetadataStore, Reservation, StoreError, StoredObject, Tombstone,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A `BlobStore` that fails chosen puts, for proving that failed uploads leave nothing.
struct FailingBlobs {
    inner: Arc<dyn BlobStore>,
    fail_thumbnails: AtomicBool,
    fail_deletes: AtomicBool,
}

#[async_trait]
impl BlobStore for FailingBlobs {
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        cache_control: &str,
    ) -> Result<(), StoreError> {
        if key.contains("/thumbnails/") && self.fail_thumbnails.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        self.inner
            .put(key, bytes, content_type, cache_control)
            .await
    }
    async fn get(&self, key: &str, max_bytes: u64) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key, max_bytes).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        if self.fail_deletes.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        self.inner.delete(key).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StoreError> {
        self.inner.list(prefix).await
    }
}

/// A `MetadataStore` whose record creation always fails.
struct FailingCreate {
    inner: Arc<dyn MetadataStore>,
}

#[async_trait]
impl MetadataStore for FailingCreate {
    async fn create(&self, _record: &ImageRecord) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("injected failure".into()))
    }
    async fn get(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        self.inner.get(id).await
    }
    async fn put_if_newer(&self, record: &ImageRecord) -> Result<bool, StoreError> {
        self.inner.put_if_newer(record).await
    }
    async fn scan(
        &self,
        start: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ImageRecord>, Option<String>), StoreError> {
        self.inner.scan(start, limit).await
    }
    async fn update(&self, record: &ImageRecord, expected: u64) -> Result<(), StoreError> {
        self.inner.update(record, expected).await
    }
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    async fn put_tombstone_if_newer(&self, tombstone: &Tombstone) -> Result<bool, StoreError> {
        self.inner.put_tombstone_if_newer(tombstone).await
    }
    async fn tombstone(&self, id: &str) -> Result<Option<Tombstone>, StoreError> {
        self.inner.tombstone(id).await
    }
    async fn scan_tombstones(
        &self,
        start: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Tombstone>, Option<String>), StoreError> {
        self.inner.scan_tombstones(start, limit).await
    }
    async fn list(&self, query: ListQuery<'_>) -> Result<Vec<ImageRecord>, StoreError> {
        self.inner.list(query).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn reserve_idempotency(
        &self,
        user: &str,
        key: &str,
        fingerprint: &str,
        now: i64,
        expires: i64,
        lease_until: i64,
    ) -> Result<Reservation, StoreError> {
        self.inner
            .reserve_idempotency(user, key, fingerprint, now, expires, lease_until)
            .await
    }
    async fn find_idempotency(
        &self,
        user: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<Reservation>, StoreError> {
        self.inner.find_idempotency(user, key, now).await
    }
    async fn complete_idempotency(
        &self,
        user: &str,
        key: &str,
        response: &str,
    ) -> Result<(), StoreError> {
        self.inner.complete_idempotency(user, key, response).await
    }
    async fn release_idempotency(&self, user: &str, key: &str) -> Result<(), StoreError> {
        self.inner.release_idempotency(user, key).await
    }
}

async fn a_cleanup_that_fails_reports_the_objects_it_left(backend: Backend) {
    let server = Server::start(backend).await;
    let created: Value = server
        .upload("gil", small_jpeg(), &[])
        .await
        .json()
        .await
        .unwrap();
    let record = server
        .state
        .app
        .metadata
        .get(created["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let mut state = server.state.clone();
    let blobs = Arc::new(FailingBlobs {
        inner: state.app.blobs.clone(),
        fail_thumbnails: AtomicBool::new(false),
        fail_deletes: AtomicBool::new(true),
    });
    state.app.blobs = blobs.clone();
    // What could not be removed is said, so the log never claims a clean-up that failed.
    let mut left = imgsvc_lambda::upload::remove_objects(&state.app, &record).await;
    left.sort();
    let mut keys = vec![record.s3_key.clone(), record.thumbnail_key.clone()];
    keys.sort();
    assert_eq!(left, keys);
    blobs.fail_deletes.store(false, Ordering::SeqCst);
    assert!(
        imgsvc_lambda::upload::remove_objects(&state.app, &record)
            .await
            .is_empty()
    );
}

async fn a_store_failure_mid_upload_leaves_no_object_and_no_record(backend: Backend) {
    let server = Server::start_with(backend, |mut state| {
        state.app.blobs = Arc::new(FailingBlobs {
            inner: state.app.blobs.clone(),
            fail_thumbnails: AtomicBool::new(true),
            fail_deletes: AtomicBool::new(false),
        });
        state
    })
    .await;
    problem(
        server.upload("erin", small_jpeg(), &[]).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    )
    .await;
    assert!(
        server.objects().await.is_empty(),
        "{:?}",
        server.objects().await
    );
    let listing: Value = server.get("erin", "/images").await.json().await.unwrap();
    assert_eq!(listing["items"], json!([]));
}

async fn a_record_write_failure_removes_the_objects(backend: Backend) {
    // The objects get written, the record write fails: the objects must be removed again.
    let server = Server::start_with(backend, |mut state| {
        state.app.metadata = Arc::new(FailingCreate {
            inner: state.app.metadata.clone(),
        });
        state
    })
    .await;
    problem(
        server.upload("frank", small_jpeg(), &[]).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    )
    .await;
    assert!(
        server.objects().await.is_empty(),
        "{:?}",
        server.objects().await
    );
}

on_both_backends!(
    a_cleanup_that_fails_reports_the_objects_it_left,
    a_store_failure_mid_upload_leaves_no_object_and_no_record,
    a_record_write_failure_removes_the_objects,
);

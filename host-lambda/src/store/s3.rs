//! `BlobStore` on Amazon S3 (or any S3-compatible endpoint) through the AWS SDK.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{BlobStore, StagedPut, StoreError, StoredObject, UploadStaging, describe};

pub struct S3BlobStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> S3BlobStore {
        S3BlobStore {
            client,
            bucket: bucket.into(),
        }
    }
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl S3BlobStore {
    /// Create the bucket unless this account already has it. True when created.
    pub async fn ensure_bucket(&self) -> Result<bool, StoreError> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(error) => {
                let error = error.into_service_error();
                if error.is_bucket_already_owned_by_you() {
                    Ok(false)
                } else {
                    Err(unavailable(describe(&error)))
                }
            }
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        cache_control: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .content_type(content_type)
            .cache_control(cache_control)
            .send()
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        Ok(())
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Option<Bytes>, StoreError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) => {
                if error.as_service_error().is_some_and(|e| e.is_no_such_key()) {
                    return Ok(None);
                }
                return Err(unavailable(describe(&error)));
            }
        };
        let size = output.content_length.and_then(|n| u64::try_from(n).ok());
        if size.is_none_or(|size| size > max_bytes) {
            return Err(StoreError::TooLarge { limit: max_bytes });
        }
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        Ok(Some(body.into_bytes()))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        // S3 answers a delete of a missing key with success, as the port requires.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unavailable(describe(&e)))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    found.push(StoredObject {
                        key: key.to_owned(),
                        modified: object.last_modified().map_or(0, |t| t.secs()),
                    });
                }
            }
        }
        Ok(found)
    }
}

/// Two-step uploads straight to S3: a presigned PUT whose signature covers the exact
/// `Content-Length` and `Content-Type`, so S3 itself refuses any other body.
pub struct S3Staging {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Staging {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> S3Staging {
        S3Staging {
            client,
            bucket: bucket.into(),
        }
    }
}

#[async_trait]
impl UploadStaging for S3Staging {
    async fn presign_put(&self, put: &StagedPut) -> Result<String, StoreError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let seconds = u64::try_from(put.expires_at.saturating_sub(now)).unwrap_or(0);
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(
            std::time::Duration::from_secs(seconds),
        )
        .map_err(|e| unavailable(describe(&e)))?;
        let length = i64::try_from(put.size_bytes).map_err(|_| StoreError::TooLarge {
            limit: put.size_bytes,
        })?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&put.key)
            .content_length(length)
            .content_type(&put.content_type)
            .presigned(config)
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        Ok(request.uri().to_owned())
    }
}

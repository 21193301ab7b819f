//! `BlobStore` on Amazon S3 (or any S3-compatible endpoint) through the AWS SDK.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{BlobStore, StoreError};

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

/// The SDK's error with its source chain, which is where the useful part is.
fn describe<E: std::error::Error>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
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
}

//! `BlobStore` on the local filesystem: one file per key under a root directory.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobStore, StoreError};

pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(unavailable)?;
        Ok(FsBlobStore { root })
    }

    /// The file for `key`. Keys are relative paths of plain components only, so no key can
    /// reach outside the root.
    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        let relative = Path::new(key);
        let plain = !key.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(StoreError::InvalidKey(key.to_owned()));
        }
        Ok(self.root.join(relative))
    }
}

/// Errors that say no object has this key (as S3 would answer `NoSuchKey`), not that the
/// store is failing: nothing there, a file where the key needs a directory, or a name the
/// filesystem can't hold.
fn names_no_object(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::InvalidFilename
    )
}

fn unavailable(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        _content_type: &str,
        _cache_control: &str,
    ) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(unavailable)?;
        }
        // Write then rename: a reader never sees half an object.
        let temporary = path.with_extension(format!("tmp-{}", ulid::Ulid::new()));
        tokio::fs::write(&temporary, &bytes)
            .await
            .map_err(unavailable)?;
        if let Err(e) = tokio::fs::rename(&temporary, &path).await {
            let _ = tokio::fs::remove_file(&temporary).await;
            return Err(unavailable(e));
        }
        Ok(())
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Option<Bytes>, StoreError> {
        use tokio::io::AsyncReadExt;
        let mut file = match tokio::fs::File::open(self.path_of(key)?).await {
            Ok(file) => file,
            Err(e) if names_no_object(&e) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let metadata = file.metadata().await.map_err(unavailable)?;
        // A directory (`images/{user}`) is no object.
        if !metadata.is_file() {
            return Ok(None);
        }
        let size = metadata.len();
        if size > max_bytes {
            return Err(StoreError::TooLarge { limit: max_bytes });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.read_to_end(&mut bytes).await.map_err(unavailable)?;
        Ok(Some(Bytes::from(bytes)))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        tokio::fs::metadata(&self.root)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

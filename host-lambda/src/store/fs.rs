//! `BlobStore` on the local filesystem: one file per key under a root directory.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobStore, StoreError, StoredObject};

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

    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StoreError> {
        let directory = match prefix.trim_end_matches('/') {
            "" => self.root.clone(),
            relative => self.path_of(relative)?,
        };
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || walk(&root, directory))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }
}

/// The files under `directory` (recursively, symlinks not followed), keyed relative to
/// `root`.
fn walk(root: &Path, directory: PathBuf) -> Result<Vec<StoredObject>, StoreError> {
    let mut found = Vec::new();
    let mut pending = vec![directory];
    while let Some(directory) = pending.pop() {
        let entries = match std::fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(unavailable(e)),
        };
        for entry in entries {
            let entry = entry.map_err(unavailable)?;
            let metadata = entry.metadata().map_err(unavailable)?;
            let path = entry.path();
            if metadata.is_dir() {
                pending.push(path);
                continue;
            }
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            let key: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let modified = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            found.push(StoredObject {
                key: key.join("/"),
                modified,
            });
        }
    }
    Ok(found)
}

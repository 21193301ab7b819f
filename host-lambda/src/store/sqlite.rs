//! `MetadataStore` on SQLite (embedded): the same record and semantics as the DynamoDB
//! table — create-only put, versioned update, newest-first listing per user and per album.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{ListQuery, MetadataStore, Reservation, StoreError, Tombstone};
use crate::record::ImageRecord;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteMetadataStore {
    pool: SqlitePool,
    /// When (the `now` of a reservation, Unix seconds) expired idempotency entries were
    /// last deleted.
    last_idempotency_sweep: std::sync::atomic::AtomicI64,
}

/// Expired idempotency entries are deleted at most this often (seconds), by the
/// reservation that finds the last sweep older: one scan of a day's keys per 10 minutes.
pub const IDEMPOTENCY_SWEEP_SECONDS: i64 = 600;

impl SqliteMetadataStore {
    /// Open (creating if needed) the database file and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        create_private_file(path).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(unavailable)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        MIGRATIONS
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(SqliteMetadataStore {
            pool,
            last_idempotency_sweep: std::sync::atomic::AtomicI64::new(i64::MIN),
        })
    }

    /// Delete the idempotency entries expired at `now`, unless that was done less than
    /// `IDEMPOTENCY_SWEEP_SECONDS` ago (DynamoDB's TTL does this for the AWS table). Nothing
    /// reads an expired entry, so this only keeps the table from growing forever; a failed
    /// sweep is logged and retried by a later reservation.
    async fn sweep_expired_idempotency(&self, now: i64) {
        use std::sync::atomic::Ordering;
        let last = self.last_idempotency_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < IDEMPOTENCY_SWEEP_SECONDS
            || self
                .last_idempotency_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let swept = sqlx::query("DELETE FROM idempotency WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await;
        match swept {
            Ok(done) => tracing::debug!(deleted = done.rows_affected(), "idempotency sweep"),
            Err(error) => {
                self.last_idempotency_sweep.store(last, Ordering::Relaxed);
                tracing::warn!(error = %error, "could not delete expired idempotency entries");
            }
        }
    }
}

/// Create the database file private (0600 on Unix) if it does not exist yet; SQLite gives
/// its `-wal` and `-shm` files the database's permissions. An existing file is left as is.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn unavailable_text(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn tombstone_of(row: &sqlx::sqlite::SqliteRow) -> Tombstone {
    Tombstone {
        id: row.get(0),
        version: u64::try_from(row.get::<i64, _>(1)).unwrap_or(0),
        deleted_at: row.get(2),
    }
}

fn encode(record: &ImageRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|e| StoreError::Unavailable(e.to_string()))
}

fn decode(json: &str) -> Result<ImageRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Unavailable(format!("bad record: {e}")))
}

#[async_trait]
impl MetadataStore for SqliteMetadataStore {
    async fn create(&self, record: &ImageRecord) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO images (id, user_id, album_id, uploaded_at, version, record)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&record.id)
        .bind(&record.user_id)
        .bind(&record.album_id)
        .bind(&record.uploaded_at)
        .bind(record.version as i64)
        .bind(encode(record)?)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        if result.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists);
        }
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        let row = sqlx::query("SELECT record FROM images WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|r| decode(r.get::<&str, _>(0))).transpose()
    }

    async fn update(&self, record: &ImageRecord, expected_version: u64) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE images SET album_id = ?, version = ?, record = ? WHERE id = ? AND version = ?",
        )
        .bind(&record.album_id)
        .bind(record.version as i64)
        .bind(encode(record)?)
        .bind(&record.id)
        .bind(expected_version as i64)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        if result.rows_affected() == 1 {
            return Ok(());
        }
        match self.get(&record.id).await? {
            Some(current) => Err(StoreError::VersionConflict {
                current: current.version,
            }),
            None => Err(StoreError::NotFound),
        }
    }

    async fn scan(
        &self,
        start: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ImageRecord>, Option<String>), StoreError> {
        let rows = sqlx::query("SELECT id, record FROM images WHERE id > ? ORDER BY id LIMIT ?")
            .bind(start.unwrap_or_default())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let records = rows
            .iter()
            .map(|r| decode(r.get::<&str, _>(1)))
            .collect::<Result<Vec<_>, _>>()?;
        let next = (records.len() == limit)
            .then(|| records.last().map(|r| r.id.clone()))
            .flatten();
        Ok((records, next))
    }

    async fn put_if_newer(&self, record: &ImageRecord) -> Result<bool, StoreError> {
        let version = i64::try_from(record.version).map_err(unavailable_text)?;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // A tombstone at the same or a newer version: the record was deleted after this copy.
        let deleted: Option<i64> =
            sqlx::query_scalar("SELECT version FROM tombstones WHERE id = ? AND version >= ?")
                .bind(&record.id)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        if deleted.is_some() {
            return Ok(false);
        }
        let result = sqlx::query(
            "INSERT INTO images (id, user_id, album_id, uploaded_at, version, record)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id,
                 album_id = excluded.album_id, uploaded_at = excluded.uploaded_at,
                 version = excluded.version, record = excluded.record
             WHERE images.version < excluded.version",
        )
        .bind(&record.id)
        .bind(&record.user_id)
        .bind(&record.album_id)
        .bind(&record.uploaded_at)
        .bind(version)
        .bind(encode(record)?)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if result.rows_affected() == 1 {
            sqlx::query("DELETE FROM tombstones WHERE id = ?")
                .bind(&record.id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(result.rows_affected() == 1)
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let version: Option<i64> =
            sqlx::query_scalar("DELETE FROM images WHERE id = ? RETURNING version")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        if let Some(version) = version {
            sqlx::query(
                "INSERT INTO tombstones (id, version, deleted_at) VALUES (?, ?, ?)
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                     deleted_at = excluded.deleted_at
                 WHERE tombstones.version < excluded.version",
            )
            .bind(id)
            .bind(version.saturating_add(1))
            .bind(crate::record::now())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn put_tombstone_if_newer(&self, tombstone: &Tombstone) -> Result<bool, StoreError> {
        let version = i64::try_from(tombstone.version).map_err(unavailable_text)?;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let newer: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM images WHERE id = ?1 AND version >= ?2
             UNION ALL SELECT version FROM tombstones WHERE id = ?1 AND version >= ?2",
        )
        .bind(&tombstone.id)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        if newer.is_some() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM images WHERE id = ?")
            .bind(&tombstone.id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO tombstones (id, version, deleted_at) VALUES (?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                 deleted_at = excluded.deleted_at",
        )
        .bind(&tombstone.id)
        .bind(version)
        .bind(&tombstone.deleted_at)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn tombstone(&self, id: &str) -> Result<Option<Tombstone>, StoreError> {
        let row = sqlx::query("SELECT id, version, deleted_at FROM tombstones WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.as_ref().map(tombstone_of))
    }

    async fn scan_tombstones(
        &self,
        start: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Tombstone>, Option<String>), StoreError> {
        let rows = sqlx::query(
            "SELECT id, version, deleted_at FROM tombstones WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(start.unwrap_or_default())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let tombstones: Vec<Tombstone> = rows.iter().map(tombstone_of).collect();
        let next = (tombstones.len() == limit)
            .then(|| tombstones.last().map(|t| t.id.clone()))
            .flatten();
        Ok((tombstones, next))
    }

    async fn list(&self, query: ListQuery<'_>) -> Result<Vec<ImageRecord>, StoreError> {
        // Keyset pagination on (uploaded_at, id), the same order as the DynamoDB GSIs.
        let (after_at, after_id) = match &query.after {
            Some(p) => (Some(p.uploaded_at.as_str()), Some(p.id.as_str())),
            None => (None, None),
        };
        let rows = sqlx::query(
            "SELECT record FROM images
             WHERE user_id = ?1
               AND (?2 IS NULL OR album_id = ?2)
               AND (?3 IS NULL OR uploaded_at < ?3 OR (uploaded_at = ?3 AND id < ?4))
             ORDER BY uploaded_at DESC, id DESC
             LIMIT ?5",
        )
        .bind(query.user_id)
        .bind(query.album_id)
        .bind(after_at)
        .bind(after_id)
        .bind(query.limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(|r| decode(r.get::<&str, _>(0))).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn reserve_idempotency(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
        now: i64,
        expires_at: i64,
        lease_until: i64,
    ) -> Result<Reservation, StoreError> {
        self.sweep_expired_idempotency(now).await;
        // Insert, or take over an expired or abandoned entry; a live entry is left alone
        // and reported.
        let taken = sqlx::query(
            "INSERT INTO idempotency (user_id, key, fingerprint, response, expires_at, lease_until)
             VALUES (?1, ?2, ?3, NULL, ?4, ?6)
             ON CONFLICT (user_id, key) DO UPDATE
               SET fingerprint = excluded.fingerprint, response = NULL,
                   expires_at = excluded.expires_at, lease_until = excluded.lease_until
               WHERE idempotency.expires_at <= ?5
                  OR (idempotency.response IS NULL AND idempotency.lease_until <= ?5)",
        )
        .bind(user_id)
        .bind(key)
        .bind(fingerprint)
        .bind(expires_at)
        .bind(now)
        .bind(lease_until)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        if taken.rows_affected() == 1 {
            return Ok(Reservation::Reserved);
        }
        // Not taken, so a live entry exists: report it.
        self.find_idempotency(user_id, key, now)
            .await?
            .ok_or_else(|| StoreError::Unavailable("idempotency entry vanished".into()))
    }

    async fn find_idempotency(
        &self,
        user_id: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<Reservation>, StoreError> {
        let row = sqlx::query(
            "SELECT fingerprint, response FROM idempotency
             WHERE user_id = ?1 AND key = ?2 AND expires_at > ?3
               AND (response IS NOT NULL OR lease_until > ?3)",
        )
        .bind(user_id)
        .bind(key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(row.map(|row| Reservation::existing(row.get(0), row.get(1))))
    }

    async fn complete_idempotency(
        &self,
        user_id: &str,
        key: &str,
        response: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE idempotency SET response = ? WHERE user_id = ? AND key = ?")
            .bind(response)
            .bind(user_id)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release_idempotency(&self, user_id: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency WHERE user_id = ? AND key = ? AND response IS NULL")
            .bind(user_id)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

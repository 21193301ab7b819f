//! `LegacyStore` on PostgreSQL (sqlx): the gallery table, its outbox and checkpoints.

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use time::OffsetDateTime;

use super::legacy::{Checkpoint, LegacyPosition, LegacyRow, LegacyStore, OutboxEntry};
use crate::record::iso8601;
use crate::store::{StoreError, Tombstone};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const COLUMNS: &str = "id, user_id, album_id, title, tags, created_at, updated_at, \
    original_filename, s3_key, s3_bucket, thumbnail_s3_key, mime_type, size_bytes, width, \
    height, version";

pub struct PgLegacyStore {
    pool: PgPool,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn legacy_row_from(r: &PgRow) -> Result<LegacyRow, StoreError> {
    Ok(LegacyRow {
        id: r.try_get("id").map_err(unavailable)?,
        user_id: r.try_get("user_id").map_err(unavailable)?,
        album_id: r.try_get("album_id").map_err(unavailable)?,
        title: r.try_get("title").map_err(unavailable)?,
        tags: r.try_get("tags").map_err(unavailable)?,
        created_at: r.try_get("created_at").map_err(unavailable)?,
        updated_at: r.try_get("updated_at").map_err(unavailable)?,
        original_filename: r.try_get("original_filename").map_err(unavailable)?,
        s3_key: r.try_get("s3_key").map_err(unavailable)?,
        s3_bucket: r.try_get("s3_bucket").map_err(unavailable)?,
        thumbnail_s3_key: r.try_get("thumbnail_s3_key").map_err(unavailable)?,
        mime_type: r.try_get("mime_type").map_err(unavailable)?,
        size_bytes: r.try_get("size_bytes").map_err(unavailable)?,
        width: r.try_get("width").map_err(unavailable)?,
        height: r.try_get("height").map_err(unavailable)?,
        version: r.try_get("version").map_err(unavailable)?,
    })
}

fn tombstone_of(r: &PgRow) -> Result<Tombstone, StoreError> {
    let version: i64 = r.try_get("version").map_err(unavailable)?;
    let deleted_at: OffsetDateTime = r.try_get("deleted_at").map_err(unavailable)?;
    Ok(Tombstone {
        id: r.try_get("id").map_err(unavailable)?,
        version: u64::try_from(version).unwrap_or(0),
        deleted_at: iso8601(deleted_at),
    })
}

impl PgLegacyStore {
    /// Connect (`postgres://…`) and bring the schema up to date.
    pub async fn connect(url: &str) -> Result<PgLegacyStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(unavailable)?;
        MIGRATIONS.run(&pool).await.map_err(unavailable)?;
        Ok(PgLegacyStore { pool })
    }

    async fn enqueue(
        tx: &mut Transaction<'_, Postgres>,
        id: &str,
    ) -> Result<OutboxEntry, StoreError> {
        let seq: i64 =
            sqlx::query_scalar("INSERT INTO gallery_outbox (image_id) VALUES ($1) RETURNING seq")
                .bind(id)
                .fetch_one(&mut **tx)
                .await
                .map_err(unavailable)?;
        Ok(OutboxEntry {
            seq,
            image_id: id.to_owned(),
            attempts: 0,
        })
    }

    /// Remember a delete at `version` (keeping a newer tombstone if there is one).
    async fn record_tombstone(
        tx: &mut Transaction<'_, Postgres>,
        id: &str,
        version: i64,
        deleted_at: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO gallery_tombstones (id, version, deleted_at)
             VALUES ($1, $2, coalesce($3, now()))
             ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                 deleted_at = excluded.deleted_at
             WHERE gallery_tombstones.version < excluded.version",
        )
        .bind(id)
        .bind(version)
        .bind(deleted_at)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    /// Enqueue when asked, then commit.
    async fn finish(
        mut tx: Transaction<'_, Postgres>,
        id: &str,
        mirror: bool,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        let entry = if mirror {
            Some(Self::enqueue(&mut tx, id).await?)
        } else {
            None
        };
        tx.commit().await.map_err(unavailable)?;
        Ok(entry)
    }
}

/// Binds a row's columns, in `COLUMNS` order, to `$1…$16`.
fn bind_row<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    row: &'q LegacyRow,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&row.id)
        .bind(&row.user_id)
        .bind(&row.album_id)
        .bind(&row.title)
        .bind(&row.tags)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(&row.original_filename)
        .bind(&row.s3_key)
        .bind(&row.s3_bucket)
        .bind(&row.thumbnail_s3_key)
        .bind(&row.mime_type)
        .bind(row.size_bytes)
        .bind(row.width)
        .bind(row.height)
        .bind(row.version)
}

const VALUES: &str = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16";

#[async_trait]
impl LegacyStore for PgLegacyStore {
    async fn insert(
        &self,
        row: &LegacyRow,
        mirror: bool,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let sql = format!(
            "INSERT INTO gallery_images ({COLUMNS}) VALUES ({VALUES}) ON CONFLICT (id) DO NOTHING"
        );
        let result = bind_row(sqlx::query(&sql), row)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if result.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists);
        }
        Self::finish(tx, &row.id, mirror).await
    }

    async fn get(&self, id: &str) -> Result<Option<LegacyRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM gallery_images WHERE id = $1");
        sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(legacy_row_from)
            .transpose()
    }

    async fn list(
        &self,
        user_id: &str,
        album_id: Option<&str>,
        after: Option<&LegacyPosition>,
        limit: usize,
    ) -> Result<Vec<LegacyRow>, StoreError> {
        // Ordered and compared on the millisecond, as `uploadedAt` and so the cursor carry
        // it: comparing microseconds with a millisecond cursor skipped rows.
        let sql = format!(
            "SELECT {COLUMNS} FROM gallery_images
             WHERE user_id = $1 AND ($2::text IS NULL OR album_id = $2)
               AND ($3::timestamptz IS NULL
                    OR (date_trunc('milliseconds', created_at AT TIME ZONE 'UTC'), id)
                       < (date_trunc('milliseconds', $3::timestamptz AT TIME ZONE 'UTC'), $4))
             ORDER BY date_trunc('milliseconds', created_at AT TIME ZONE 'UTC') DESC, id DESC
             LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(album_id)
            .bind(after.map(|a| a.created_at))
            .bind(after.map(|a| a.id.as_str()))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(legacy_row_from).collect()
    }

    async fn update(
        &self,
        row: &LegacyRow,
        expected_version: i64,
        mirror: bool,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let result = sqlx::query(
            "UPDATE gallery_images SET album_id = $2, title = $3, tags = $4, updated_at = $5,
                 version = $6
             WHERE id = $1 AND version = $7",
        )
        .bind(&row.id)
        .bind(&row.album_id)
        .bind(&row.title)
        .bind(&row.tags)
        .bind(row.updated_at)
        .bind(row.version)
        .bind(expected_version)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if result.rows_affected() == 0 {
            drop(tx);
            return match self.get(&row.id).await? {
                Some(current) => Err(StoreError::VersionConflict {
                    current: u64::try_from(current.version).unwrap_or(0),
                }),
                None => Err(StoreError::NotFound),
            };
        }
        Self::finish(tx, &row.id, mirror).await
    }

    async fn delete(&self, id: &str, mirror: bool) -> Result<Option<OutboxEntry>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let version: Option<i64> =
            sqlx::query_scalar("DELETE FROM gallery_images WHERE id = $1 RETURNING version")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        if let Some(version) = version {
            Self::record_tombstone(&mut tx, id, version.saturating_add(1), None).await?;
        }
        Self::finish(tx, id, mirror).await
    }

    async fn put_if_newer(&self, row: &LegacyRow) -> Result<bool, StoreError> {
        // Not over a newer row, nor over a delete at the same or a newer version.
        let sql = format!(
            "INSERT INTO gallery_images ({COLUMNS})
             SELECT {VALUES}
             WHERE NOT EXISTS (SELECT 1 FROM gallery_tombstones WHERE id = $1 AND version >= $16)
             ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id,
                 album_id = excluded.album_id, title = excluded.title, tags = excluded.tags,
                 created_at = excluded.created_at, updated_at = excluded.updated_at,
                 original_filename = excluded.original_filename, s3_key = excluded.s3_key,
                 s3_bucket = excluded.s3_bucket, thumbnail_s3_key = excluded.thumbnail_s3_key,
                 mime_type = excluded.mime_type, size_bytes = excluded.size_bytes,
                 width = excluded.width, height = excluded.height, version = excluded.version
             WHERE gallery_images.version < excluded.version"
        );
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let written = bind_row(sqlx::query(&sql), row)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected()
            == 1;
        if written {
            // A newer row than the delete: the row is back (ids are never reused, so only a
            // deliberate copy gets here).
            sqlx::query("DELETE FROM gallery_tombstones WHERE id = $1 AND version < $2")
                .bind(&row.id)
                .bind(row.version)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(written)
    }

    async fn put_tombstone_if_newer(&self, tombstone: &Tombstone) -> Result<bool, StoreError> {
        let version = i64::try_from(tombstone.version).map_err(unavailable)?;
        let deleted_at = super::mapping::timestamp("deletedAt", &tombstone.deleted_at).ok();
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let newer: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM gallery_images WHERE id = $1 AND version >= $2)
                 OR EXISTS (SELECT 1 FROM gallery_tombstones WHERE id = $1 AND version >= $2)",
        )
        .bind(&tombstone.id)
        .bind(version)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        if newer {
            return Ok(false);
        }
        sqlx::query("DELETE FROM gallery_images WHERE id = $1")
            .bind(&tombstone.id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        Self::record_tombstone(&mut tx, &tombstone.id, version, deleted_at).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn tombstone(&self, id: &str) -> Result<Option<Tombstone>, StoreError> {
        let row =
            sqlx::query("SELECT id, version, deleted_at FROM gallery_tombstones WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        row.as_ref().map(tombstone_of).transpose()
    }

    async fn scan_tombstones(
        &self,
        after_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Tombstone>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, version, deleted_at FROM gallery_tombstones
             WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(tombstone_of).collect()
    }

    async fn due_mirrors(
        &self,
        limit: usize,
        include_waiting: bool,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        // One sync per image covers all its entries: mirroring reads the row as it is.
        let rows = sqlx::query(
            "SELECT image_id, max(seq) AS seq, max(attempts) AS attempts FROM gallery_outbox
             WHERE $2 OR next_attempt_at <= now() GROUP BY image_id ORDER BY min(seq) LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(include_waiting)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                Ok(OutboxEntry {
                    seq: r.try_get("seq").map_err(unavailable)?,
                    image_id: r.try_get("image_id").map_err(unavailable)?,
                    attempts: r.try_get("attempts").map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn mirrored(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM gallery_outbox WHERE image_id = $1 AND seq <= $2")
            .bind(&entry.image_id)
            .bind(entry.seq)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn mirror_failed(
        &self,
        entry: &OutboxEntry,
        delay: std::time::Duration,
        error: &str,
    ) -> Result<(), StoreError> {
        let next = OffsetDateTime::now_utc() + delay;
        sqlx::query(
            "UPDATE gallery_outbox SET attempts = attempts + 1, next_attempt_at = $3,
                 last_error = $4 WHERE image_id = $1 AND seq <= $2",
        )
        .bind(&entry.image_id)
        .bind(entry.seq)
        .bind(next)
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn waiting_mirrors(&self) -> Result<(i64, Option<OffsetDateTime>), StoreError> {
        let row = sqlx::query(
            "SELECT count(DISTINCT image_id) AS waiting, min(next_attempt_at) AS next
             FROM gallery_outbox WHERE next_attempt_at > now()",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok((
            row.try_get("waiting").map_err(unavailable)?,
            row.try_get("next").map_err(unavailable)?,
        ))
    }

    async fn count(&self, since: Option<OffsetDateTime>) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM gallery_images WHERE $1::timestamptz IS NULL OR updated_at >= $1",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn outbox_depth(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT count(*) FROM gallery_outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn scan(
        &self,
        after_id: Option<&str>,
        since: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<Vec<LegacyRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM gallery_images
             WHERE ($1::text IS NULL OR id > $1) AND ($2::timestamptz IS NULL OR updated_at >= $2)
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(after_id)
            .bind(since)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(legacy_row_from).collect()
    }

    async fn existing_ids(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT id FROM gallery_images WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query("SELECT last_id, copied FROM migration_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|r| {
            Ok(Checkpoint {
                last_id: r.try_get("last_id").map_err(unavailable)?,
                copied: r.try_get("copied").map_err(unavailable)?,
            })
        })
        .transpose()
    }

    async fn save_checkpoint(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO migration_checkpoints (name, last_id, copied, updated_at)
             VALUES ($1, $2, $3, now())
             ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id,
                 copied = excluded.copied, updated_at = now()",
        )
        .bind(name)
        .bind(&checkpoint.last_id)
        .bind(checkpoint.copied)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn clear_checkpoint(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM migration_checkpoints WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

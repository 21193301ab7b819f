-- Deleted rows, remembered with the version that deleted them (the row's last version + 1),
-- so neither a rollback from the Image Service nor a late mirror brings them back.
CREATE TABLE IF NOT EXISTS gallery_tombstones (
    id         TEXT PRIMARY KEY,
    version    BIGINT NOT NULL,
    deleted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Listing pages on the millisecond the API's cursors carry (`uploadedAt`), then the id:
-- rows written by now() have microseconds, and several can share one.
CREATE INDEX IF NOT EXISTS gallery_images_by_user_ms
    ON gallery_images (user_id, date_trunc('milliseconds', created_at AT TIME ZONE 'UTC') DESC, id DESC);
CREATE INDEX IF NOT EXISTS gallery_images_by_album_ms
    ON gallery_images (album_id, date_trunc('milliseconds', created_at AT TIME ZONE 'UTC') DESC, id DESC)
    WHERE album_id IS NOT NULL;

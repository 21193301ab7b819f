-- The legacy gallery (the seeds' `gallery_images`, the source of truth during migration).
CREATE TABLE IF NOT EXISTS gallery_images (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL,
    album_id          TEXT,
    title             TEXT,
    tags              TEXT[] NOT NULL DEFAULT '{}',
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    original_filename TEXT,
    s3_key            TEXT NOT NULL,
    s3_bucket         TEXT NOT NULL,
    thumbnail_s3_key  TEXT,
    mime_type         TEXT NOT NULL,
    size_bytes        BIGINT NOT NULL,
    width             INTEGER NOT NULL,
    height            INTEGER NOT NULL,
    version           BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS gallery_images_by_user
    ON gallery_images (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS gallery_images_by_album
    ON gallery_images (album_id, created_at DESC, id DESC) WHERE album_id IS NOT NULL;

-- Pending mirrors to the Image Service, written in the same transaction as the gallery
-- change. An entry names an image, not a state: mirroring reads the row as it is then.
CREATE TABLE IF NOT EXISTS gallery_outbox (
    seq             BIGSERIAL PRIMARY KEY,
    image_id        TEXT NOT NULL,
    enqueued_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS gallery_outbox_due ON gallery_outbox (next_attempt_at, seq);

-- Where a backfill got to, so a killed run resumes.
CREATE TABLE IF NOT EXISTS migration_checkpoints (
    name       TEXT PRIMARY KEY,
    last_id    TEXT NOT NULL,
    copied     BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

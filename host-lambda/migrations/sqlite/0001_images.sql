-- The image records: the full record as JSON plus the columns the queries need.
CREATE TABLE images (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL,
    album_id    TEXT,
    uploaded_at TEXT NOT NULL,
    version     INTEGER NOT NULL,
    record      TEXT NOT NULL
);
-- GSI1: a user's images newest first. GSI2: an album's images newest first.
CREATE INDEX images_by_user ON images (user_id, uploaded_at DESC, id DESC);
CREATE INDEX images_by_album ON images (album_id, uploaded_at DESC, id DESC) WHERE album_id IS NOT NULL;

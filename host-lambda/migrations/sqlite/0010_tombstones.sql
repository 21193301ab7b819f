-- Deleted records, remembered with the version that deleted them, so an older copy (a late
-- mirror, a backfill, a rollback) can never bring a record back.
CREATE TABLE tombstones (
    id         TEXT PRIMARY KEY NOT NULL,
    version    INTEGER NOT NULL,
    deleted_at TEXT NOT NULL
);

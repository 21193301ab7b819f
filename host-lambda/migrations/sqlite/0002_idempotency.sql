-- Idempotency-Key records: one per (user, key), kept for 24 hours.
CREATE TABLE idempotency (
    user_id     TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response    TEXT,            -- NULL while the first request is still in progress
    expires_at  INTEGER NOT NULL, -- Unix seconds
    PRIMARY KEY (user_id, key)
);

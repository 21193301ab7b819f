-- The lease of an in-progress Idempotency-Key: past it, the request holding the key is
-- presumed dead (killed mid-upload) and a retry takes the key over. Entries from before
-- this column have lease 0: an in-progress one among them is already abandoned.
ALTER TABLE idempotency ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0; -- Unix seconds

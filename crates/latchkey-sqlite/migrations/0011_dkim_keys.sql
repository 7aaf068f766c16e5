-- The DKIM keys the server generated for itself (when no key file is configured), sealed with
-- the master key like the signing keys: one per selector, the first instance to write it wins.
CREATE TABLE dkim_keys (
    selector     TEXT PRIMARY KEY,
    algorithm    TEXT NOT NULL,
    sealed_pkcs8 BLOB NOT NULL,
    created_at   INTEGER NOT NULL
);

-- Which relay took a sent message (`host:port`), when several are configured.
ALTER TABLE outbox ADD COLUMN relay TEXT;

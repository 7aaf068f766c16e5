-- The DKIM keys the server generated for itself (when no key file is configured), sealed with
-- the master key like the signing keys: one per selector, the first instance to write it wins.
CREATE TABLE dkim_keys (
    selector     TEXT COLLATE "C" PRIMARY KEY,
    algorithm    TEXT NOT NULL,
    sealed_pkcs8 BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);

-- Which relay took a sent message (`host:port`), when several are configured.
ALTER TABLE outbox ADD COLUMN relay TEXT;

-- Addresses no mail is sent to until `until`: a delivery to them was refused for good (a 5xx).
-- An e-mail for one is written `suppressed`, without its body, and never sent.
CREATE TABLE suppressions (
    email      TEXT COLLATE "C" PRIMARY KEY,
    reason     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    until      BIGINT NOT NULL
);

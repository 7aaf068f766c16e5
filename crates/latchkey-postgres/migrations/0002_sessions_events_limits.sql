-- Refresh-token families, the audit trail, rate-limit windows and leases. As in 0001: times
-- are milliseconds since the Unix epoch and every integer is BIGINT.

ALTER TABLE users ADD COLUMN name TEXT;
ALTER TABLE users ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
-- Users are listed in id order, which is byte order ("C"), whatever the database's collation.
CREATE INDEX users_by_id ON users (id COLLATE "C");

CREATE TABLE refresh_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  BYTEA NOT NULL UNIQUE,
    family_id   TEXT NOT NULL,
    app_id      TEXT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_method TEXT NOT NULL,
    auth_time   BIGINT NOT NULL,
    scope       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    rotated_at  BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_by_app ON refresh_tokens (app_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);

-- The audit trail outlives what it describes: no foreign keys. Read in id order, which is byte
-- order: the key's own collation is "C", so paging walks the primary key.
CREATE TABLE events (
    id         TEXT COLLATE "C" PRIMARY KEY,
    kind       TEXT NOT NULL,
    app_id     TEXT,
    user_id    TEXT,
    subject    TEXT,
    detail     TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX rate_limits_by_expiry ON rate_limits (expires_at);

CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  BIGINT NOT NULL
);

CREATE INDEX outbox_by_created ON outbox (created_at);

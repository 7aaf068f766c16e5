ALTER TABLE users ADD COLUMN name TEXT;
ALTER TABLE users ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';

CREATE TABLE refresh_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  BLOB NOT NULL UNIQUE,
    family_id   TEXT NOT NULL,
    app_id      TEXT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_method TEXT NOT NULL,
    auth_time   INTEGER NOT NULL,
    scope       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    rotated_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);

-- The audit trail outlives what it describes: no foreign keys.
CREATE TABLE events (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    app_id     TEXT,
    user_id    TEXT,
    subject    TEXT,
    detail     TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX rate_limits_by_expiry ON rate_limits (expires_at);

CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL
);

CREATE INDEX outbox_by_created ON outbox (created_at);

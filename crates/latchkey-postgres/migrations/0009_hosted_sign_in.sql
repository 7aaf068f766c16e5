-- The hosted sign-in: a request waiting in one browser for its e-mail challenge, and the
-- browser session a sign-in leaves behind. Cookies are stored only as keyed hashes.
CREATE TABLE hosted_requests (
    id           TEXT PRIMARY KEY,
    app_id       TEXT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    challenge_id TEXT NOT NULL UNIQUE,
    browser_hash BYTEA NOT NULL,
    match_number BIGINT NOT NULL,
    choices      TEXT NOT NULL,
    status       TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    locale       TEXT,
    restart      TEXT,
    user_id      TEXT,
    auth_method  TEXT,
    auth_time    BIGINT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX hosted_requests_by_expiry ON hosted_requests (expires_at);

CREATE TABLE browser_sessions (
    id           TEXT PRIMARY KEY,
    token_hash   BYTEA NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    challenge_id TEXT NOT NULL,
    auth_method  TEXT NOT NULL,
    auth_time    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX browser_sessions_by_user ON browser_sessions (user_id);
CREATE INDEX browser_sessions_by_expiry ON browser_sessions (expires_at);

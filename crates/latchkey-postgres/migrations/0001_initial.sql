-- Times are milliseconds since the Unix epoch. Secrets are keyed hashes (BYTEA), never plain.
-- Every integer is BIGINT: the shared row readers read integers as i64.

CREATE TABLE applications (
    id                   TEXT PRIMARY KEY,
    client_id            TEXT NOT NULL UNIQUE,
    name                 TEXT NOT NULL,
    public               BOOLEAN NOT NULL,
    redirect_uris        TEXT NOT NULL,
    default_redirect_uri TEXT,
    settings             TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE client_secrets (
    id         TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    hash       BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX client_secrets_by_app ON client_secrets (app_id);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    email_verified  BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_sign_in_at BIGINT
);

CREATE TABLE challenges (
    id             TEXT PRIMARY KEY,
    purpose        TEXT NOT NULL,
    app_id         TEXT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    email          TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    state          TEXT,
    nonce          TEXT,
    code_challenge TEXT,
    client_ip      TEXT,
    user_agent     TEXT,
    create_user    BOOLEAN NOT NULL,
    link_hash      BYTEA NOT NULL UNIQUE,
    otp_hash       BYTEA NOT NULL,
    otp_attempts   BIGINT NOT NULL DEFAULT 0,
    status         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    otp_expires_at BIGINT NOT NULL,
    consumed_at    BIGINT
);
CREATE INDEX challenges_by_app_email ON challenges (app_id, email, created_at);
CREATE INDEX challenges_by_expiry ON challenges (expires_at);

CREATE TABLE authorization_codes (
    id             TEXT PRIMARY KEY,
    code_hash      BYTEA NOT NULL UNIQUE,
    app_id         TEXT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    challenge_id   TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT,
    nonce          TEXT,
    auth_method    TEXT NOT NULL,
    auth_time      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);
CREATE INDEX authorization_codes_by_app ON authorization_codes (app_id);
CREATE INDEX authorization_codes_by_user ON authorization_codes (user_id);
CREATE INDEX authorization_codes_by_expiry ON authorization_codes (expires_at);

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    app_id          TEXT REFERENCES applications (id) ON DELETE CASCADE,
    challenge_id    TEXT,
    sealed          BYTEA,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_by_app ON outbox (app_id);
CREATE INDEX outbox_by_challenge ON outbox (challenge_id);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    sealed_pkcs8 BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT
);

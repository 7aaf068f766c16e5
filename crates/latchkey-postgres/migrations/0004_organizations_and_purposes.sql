-- Registrations and verification links are challenges too; organizations select themselves
-- for a sign-in and travel in its tokens.
ALTER TABLE challenges ADD COLUMN org_id TEXT;
ALTER TABLE challenges ADD COLUMN context_data TEXT NOT NULL DEFAULT '{}';
ALTER TABLE challenges ADD COLUMN created_by TEXT;
ALTER TABLE authorization_codes ADD COLUMN org_id TEXT;
ALTER TABLE refresh_tokens ADD COLUMN org_id TEXT;

CREATE TABLE organizations (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    slug       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A domain belongs to one organization at most: it is the key.
CREATE TABLE organization_domains (
    domain TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE
);
CREATE INDEX organization_domains_by_org ON organization_domains (org_id);

CREATE TABLE memberships (
    org_id     TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id);

-- Who opened each sign-in link (scanner telemetry): every request for a landing page is
-- counted; the first few of each link are kept in full. Both go with their challenge.
CREATE TABLE link_views (
    challenge_id TEXT NOT NULL REFERENCES challenges (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    method       TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    PRIMARY KEY (challenge_id, seq)
) WITHOUT ROWID;

CREATE TABLE link_view_counts (
    challenge_id TEXT PRIMARY KEY REFERENCES challenges (id) ON DELETE CASCADE,
    total        INTEGER NOT NULL,
    pressed_at   INTEGER
);

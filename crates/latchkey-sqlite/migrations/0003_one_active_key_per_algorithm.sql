-- Instances starting together on a new database each try to create the first key of an
-- algorithm; only one insert may win, so that every instance signs with the same key.
-- A database where that race already happened keeps the newest key of each algorithm active.
UPDATE signing_keys SET retired_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000
WHERE retired_at IS NULL AND EXISTS (
    SELECT 1 FROM signing_keys n
    WHERE n.alg = signing_keys.alg AND n.retired_at IS NULL
      AND (n.created_at > signing_keys.created_at OR (n.created_at = signing_keys.created_at AND n.kid > signing_keys.kid))
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE retired_at IS NULL;

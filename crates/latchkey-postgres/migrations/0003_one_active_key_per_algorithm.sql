-- Instances starting together on a new database each try to create the first key of an
-- algorithm; only one insert may win, so that every instance signs with the same key.
-- A database where that race already happened keeps the newest key of each algorithm active.
UPDATE signing_keys k SET retired_at = (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT
WHERE k.retired_at IS NULL AND EXISTS (
    SELECT 1 FROM signing_keys n
    WHERE n.alg = k.alg AND n.retired_at IS NULL
      AND (n.created_at, n.kid COLLATE "C") > (k.created_at, k.kid COLLATE "C")
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE retired_at IS NULL;

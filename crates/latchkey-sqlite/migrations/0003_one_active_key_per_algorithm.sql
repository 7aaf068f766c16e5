-- Instances starting together on a new database each try to create the first key of an
-- algorithm; only one insert may win, so that every instance signs with the same key.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE retired_at IS NULL;

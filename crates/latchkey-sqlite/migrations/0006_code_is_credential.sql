-- Whether a sign-in's authorization code is exchanged without client authentication (for
-- callers whose documented exchange sends none); every earlier code needs the application.
ALTER TABLE challenges ADD COLUMN code_is_credential INTEGER NOT NULL DEFAULT 0;
ALTER TABLE authorization_codes ADD COLUMN code_is_credential INTEGER NOT NULL DEFAULT 0;

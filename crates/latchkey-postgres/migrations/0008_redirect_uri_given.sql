-- Whether the caller of a sign-in named its redirect URI (rather than taking the application's
-- default): the token endpoint then requires the same `redirect_uri` (RFC 6749 §4.1.3). Rows
-- written before this was recorded count as not named, so their codes exchange as they did.
ALTER TABLE challenges ADD COLUMN redirect_uri_given BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE authorization_codes ADD COLUMN redirect_uri_given BOOLEAN NOT NULL DEFAULT false;

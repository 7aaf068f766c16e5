-- The language a user reads their e-mail in, when the request names none.
ALTER TABLE users ADD COLUMN locale TEXT;

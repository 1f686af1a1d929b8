DROP TABLE mcp_token_challenges;
ALTER TABLE users DROP COLUMN password_changed_at;
DROP INDEX users_email_key;
ALTER TABLE users DROP COLUMN email_shadowed;
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
DROP FUNCTION account_key(text);

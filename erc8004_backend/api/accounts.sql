-- user_by_id --
SELECT id, username, email, role, is_active, last_login_at, password_changed_at, created_at
FROM users
WHERE id = %(user_id)s

-- user_by_api_key --
-- The key's user, noting when the key was last used (at most once a minute, so that
-- busy scripts do not rewrite the row on every request).
WITH used AS (
    UPDATE api_keys
    SET last_used_at = now()
    WHERE key_hash = %(key_hash)s
      AND revoked_at IS NULL
      AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
)
SELECT u.id, u.username, u.email, u.role, u.is_active
FROM api_keys k
JOIN users u ON u.id = k.user_id
WHERE k.key_hash = %(key_hash)s AND k.revoked_at IS NULL

-- user_for_login --
-- By username or email, compared as account_key() gives them (migration 16): in any case,
-- fullwidth or not. Usernames are ASCII, for which account_key() is lower().
SELECT id, password_hash, is_active, password_changed_at
FROM users
WHERE lower(username) = account_key(%(login)s)
   OR account_key(email) = account_key(%(login)s) AND NOT email_shadowed
LIMIT 1

-- password_hash --
SELECT password_hash FROM users WHERE id = %(user_id)s

-- change_password --
-- password_changed_at ends every access token issued before it (see api/auth.py).
UPDATE users
SET password_hash = %(password_hash)s, password_changed_at = now()
WHERE id = %(user_id)s
RETURNING password_changed_at

-- revoke_api_keys --
WITH revoked AS (
    UPDATE api_keys SET revoked_at = now()
    WHERE user_id = %(user_id)s AND revoked_at IS NULL
    RETURNING id
)
SELECT count(*) AS revoked FROM revoked

-- delete_user --
-- The schema's cascades delete the user's triggers (with their conditions, actions, state
-- and queued jobs), API keys, delivery results, token challenges and saved lenses.
DELETE FROM users WHERE id = %(user_id)s RETURNING id

-- note_login --
UPDATE users SET last_login_at = now() WHERE id = %(user_id)s

-- create_user --
INSERT INTO users (username, email, password_hash)
VALUES (%(username)s, %(email)s, %(password_hash)s)
ON CONFLICT DO NOTHING
RETURNING id, username, email, role, is_active, last_login_at, created_at

-- create_api_key --
INSERT INTO api_keys (user_id, name, prefix, key_hash)
VALUES (%(user_id)s, %(name)s, %(prefix)s, %(key_hash)s)
RETURNING id, name, prefix, created_at, last_used_at, revoked_at

-- list_api_keys --
SELECT id, name, prefix, created_at, last_used_at, revoked_at
FROM api_keys
WHERE user_id = %(user_id)s
ORDER BY created_at, id

-- revoke_api_key --
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(key_id)s AND user_id = %(user_id)s
RETURNING id

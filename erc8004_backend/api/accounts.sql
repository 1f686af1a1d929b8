-- user_by_id --
SELECT id, username, email, role, is_active, last_login_at, created_at
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
-- By username or email, either case.
SELECT id, password_hash, is_active
FROM users
WHERE lower(username) = lower(%(login)s) OR lower(email) = lower(%(login)s)
LIMIT 1

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

-- Account security: look-alike emails name one account, a password change ends earlier
-- sessions, and agent-token signatures are single use.

-- The form of a username or email that uniqueness and login compare: NFKC (a fullwidth
-- "ａ" is an "a", a ligature its letters) then lower case. Usernames are ASCII (their
-- CHECK), for which this is lower(), so users_username_key (lower(username)) stays as it is.
CREATE FUNCTION account_key(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN lower(normalize(value, NFKC));

-- Emails of accounts made before this migration may collide once normalized (they were
-- unique in lower case only). The oldest such account keeps the email; the others are
-- marked email_shadowed: they keep their rows and their email as written, and sign in
-- with their usernames. Accounts made later never collide, so they are never shadowed.
ALTER TABLE users ADD COLUMN email_shadowed boolean NOT NULL DEFAULT false;
UPDATE users AS later
SET email_shadowed = true
WHERE EXISTS (
    SELECT FROM users AS earlier
    WHERE account_key(earlier.email) = account_key(later.email)
      AND (earlier.created_at, earlier.id) < (later.created_at, later.id)
);
DROP INDEX users_email_key;
CREATE UNIQUE INDEX users_email_key ON users (account_key(email)) WHERE NOT email_shadowed;

-- Access tokens carry the password_changed_at of their user when they were issued; a token
-- whose value is not the current one was issued before the password changed, and is refused.
ALTER TABLE users ADD COLUMN password_changed_at timestamptz NOT NULL DEFAULT now();

-- Challenges for the owner's signature of an agent's MCP token change: the API hands out a
-- nonce and the exact text to sign; a signature is accepted once, from the user who asked,
-- for that agent and action, before expires_at. Consuming the row (DELETE ... RETURNING) is
-- what makes a signature single use.
CREATE TABLE mcp_token_challenges (
    nonce        text PRIMARY KEY CHECK (nonce ~ '^[0-9a-f]{32}$'),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    chain_id     bigint NOT NULL,
    agent_id     numeric(78, 0) NOT NULL CHECK (agent_id >= 0),
    action       text NOT NULL CHECK (action IN ('set', 'delete')),
    -- The SHA-256 (hex) of the token a 'set' is for; NULL for 'delete'.
    token_sha256 text CHECK ((action = 'set') = (token_sha256 IS NOT NULL)),
    -- The agent's owner when the challenge was made: the address the message names.
    signer       text NOT NULL,
    message      text NOT NULL,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX mcp_token_challenges_expiry_idx ON mcp_token_challenges (expires_at);

-- The REST API's accounts: API keys for scripts.
--
-- A key is shown once when it is made; only its SHA-256 is kept (a key is 32 random bytes,
-- so a fast hash is enough: there is nothing to guess). The prefix is the key's first
-- characters, kept in the clear so that a user can tell their keys apart.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix text NOT NULL,
    key_hash bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    last_used_at timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at);

-- Newest-first event listings across chains page by (block_time, id).
CREATE INDEX events_time_id_idx ON events (block_time DESC, id DESC);

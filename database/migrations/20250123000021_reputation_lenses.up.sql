-- Saved reputation lenses: a user's named lens definitions (erc8004_backend/agents/lenses.py),
-- kept so that a lens can be asked for by name. The API checks a definition with the Lens
-- model before writing it, and writes it whole; here it only has to be a JSON object.
CREATE TABLE reputation_lenses (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Letters, digits, '_', '.' and '-', starting with a letter or a digit: a name that needs
    -- no escaping in a URL path, and is never "." or "..".
    name       text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    definition jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Also the index of a user's lenses, listed by name.
    CONSTRAINT reputation_lenses_user_name_key UNIQUE (user_id, name)
);

CREATE TRIGGER reputation_lenses_updated_at
    BEFORE UPDATE ON reputation_lenses
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- The indexer's word on which events are final enough for the trigger engine: events at or
-- below confirmed_block_number are `confirmations` blocks deep. The processor reads no event
-- above it, so a reorg within the confirmation depth never reaches a trigger.
ALTER TABLE checkpoints ADD COLUMN confirmed_block_number bigint
    CHECK (confirmed_block_number >= 0);

-- Agent registration files, fetched from each agentURI that Registered and URIUpdated events
-- name. Keyed by a digest of the URI because on-chain data: URIs can exceed an index entry.
-- The current URI of an agent is always read from its latest event, so a reorg leaves at
-- worst an unused row here, never a wrong answer.
CREATE TABLE agent_registrations (
    chain_id        bigint NOT NULL,
    agent_id        numeric(78, 0) NOT NULL,
    uri_digest      text NOT NULL,
    agent_uri       text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'fetched', 'failed')),
    document        jsonb,
    services        jsonb NOT NULL DEFAULT '[]'::jsonb,
    mcp_endpoint    text,
    a2a_endpoint    text,
    error           text,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    fetched_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, agent_id, uri_digest)
);

CREATE INDEX idx_agent_registrations_due ON agent_registrations (next_attempt_at)
    WHERE status = 'pending';

CREATE TRIGGER agent_registrations_updated_at
    BEFORE UPDATE ON agent_registrations
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- Every ERC-8004 event indexed from a chain. An event is identified by
-- (chain_id, block_hash, log_index): storing it again is a no-op (ON CONFLICT DO NOTHING).
-- The table is partitioned by block_time, a property of the event, so that identity can be
-- the primary key (a unique key must contain the partition column).
--
-- With TimescaleDB the table is created plain and migration 9 makes it a hypertable;
-- without it the table is created partitioned by range now (a table cannot become
-- partitioned later) and migration 9 adds the weekly partitions.
--
-- Addresses and hashes are lower-case 0x-hex text. The indexer normalises them; a CHECK
-- (or domain) per column would cost more than the rest of the insert on backfill.
DO $migration$
DECLARE
    partitioning text := CASE
        WHEN EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN ''
        ELSE 'PARTITION BY RANGE (block_time)'
    END;
BEGIN
    EXECUTE $ddl$
    CREATE TABLE events (
        id                bigserial NOT NULL,
        chain_id          bigint NOT NULL,
        registry          text NOT NULL CHECK (registry IN ('identity', 'reputation', 'validation')),
        event_type        text NOT NULL,
        contract_address  text NOT NULL,
        block_number      bigint NOT NULL CHECK (block_number >= 0),
        block_hash        text NOT NULL,
        block_time        timestamptz NOT NULL,
        transaction_hash  text NOT NULL,
        transaction_index integer NOT NULL,
        log_index         integer NOT NULL,
        -- uint256; agent ids start at 0, so 0 is a real agent. NULL for events without one.
        agent_id          numeric(78, 0),

        -- identity: Registered, URIUpdated, MetadataSet, Transfer
        owner             text,
        token_uri         text,             -- agentURI (Registered) or newURI (URIUpdated)
        metadata_key      text,
        metadata_value    bytea,
        from_address      text,
        to_address        text,
        updated_by        text,

        -- reputation: NewFeedback, FeedbackRevoked, ResponseAppended
        client_address    text,
        feedback_index    numeric(20, 0),   -- uint64, 1-based per (agent, client)
        value             numeric(39, 0),   -- int128 fixed-point value ...
        value_decimals    smallint,         -- ... with this many decimals
        score             numeric,          -- value / 10^value_decimals, for conditions
        tag1              text,
        tag2              text,
        endpoint          text,
        file_uri          text,             -- feedbackURI
        file_hash         text,             -- feedbackHash
        responder         text,

        -- validation: ValidationRequest, ValidationResponse (and ResponseAppended's response)
        validator_address text,
        request_hash      text,
        request_uri       text,
        response          smallint CHECK (response BETWEEN 0 AND 255),
        response_uri      text,
        response_hash     text,
        tag               text,

        -- Fields of other ABI versions and anything without a column of its own.
        data              jsonb NOT NULL DEFAULT '{}',
        created_at        timestamptz NOT NULL DEFAULT now(),

        PRIMARY KEY (chain_id, block_hash, log_index, block_time)
    )
    $ddl$ || partitioning;
END
$migration$;

-- Chain order: the trigger engine's processing order, reorg rollback, lookups by block.
CREATE INDEX events_chain_block_idx ON events (chain_id, block_number, log_index);
CREATE INDEX events_id_idx ON events (id);
CREATE INDEX events_chain_time_idx ON events (chain_id, block_time DESC);
CREATE INDEX events_agent_idx ON events (chain_id, agent_id, block_time DESC)
    WHERE agent_id IS NOT NULL;
CREATE INDEX events_registry_type_idx ON events (registry, event_type, block_time DESC);
CREATE INDEX events_client_idx ON events (client_address, block_time DESC)
    WHERE client_address IS NOT NULL;
CREATE INDEX events_validator_idx ON events (validator_address, block_time DESC)
    WHERE validator_address IS NOT NULL;

-- How far the trigger engine has processed each chain, in chain order: events after
-- (block_number, log_index) are not yet evaluated. This is the durable record of pending
-- work, advanced in the transaction that writes the evaluated events' action jobs; NOTIFY
-- only wakes the engine early (notifications sent while nobody listens are lost). The
-- indexer appends events above its checkpoint only, and when it rolls back a reorg it moves
-- the cursor back to the fork point in the same transaction.
CREATE TABLE processing_cursors (
    chain_id     bigint PRIMARY KEY,
    block_number bigint NOT NULL,
    log_index    integer NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER processing_cursors_updated_at
    BEFORE UPDATE ON processing_cursors
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- Wakes listeners on channel 'new_event' once per inserting statement. A per-row
-- notification would cost a fifth of the insert time on backfill and tell nothing more:
-- the engine reads what is new from the table.
CREATE FUNCTION notify_new_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('new_event', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify_new
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_new_event();

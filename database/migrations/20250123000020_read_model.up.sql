-- The read model: what the events say about each agent, feedback and validation request now,
-- kept by the indexer in the transaction of each batch and rolled back with its events.
--
-- Every row is a function of the chain's stored events and nothing else, so the model can
-- always be rebuilt from `events`. One definition serves every path: the indexer applies
-- each batch with read_model_apply() over the batch's blocks; a reorg rebuilds the agents
-- with events above the fork (read_model_roll_back); `erc8004 db rebuild-read-model` and this
-- migration rebuild whole chains (read_model_clear, then read_model_apply over the chain's
-- blocks). Applying consecutive block ranges one after another gives the same model as
-- applying their union at once, which is what makes a reorg's result equal a rebuild's.
--
-- The rules, in chain order (block_number, log_index):
-- * agents: the owner is the latest Transfer's recipient (a mint comes from the zero
--   address); agent_wallet the latest MetadataSet of the reserved key `agentWallet` (20 bytes:
--   the address; empty: cleared, as unsetAgentWallet and every transfer do); agent_uri the
--   latest Registered.agentURI / URIUpdated.newURI; first and last activity over every event
--   that names the agent (identity, reputation and validation).
-- * agent_metadata: the latest value of each other key.
-- * feedback: one row per (agent, client, feedback index), from the latest NewFeedback with
--   that key. The October 2025 draft's NewFeedback (abi_version 'v0') carries no index: its
--   contract counted them per (agent, client) from 1 as the later ones do, so its index is
--   the pair's last index so far + 1. Revoked when a FeedbackRevoked of that key follows it
--   (the first such revocation's block and time); response_count counts the ResponseAppended
--   events that follow it. Revocations and responses naming no earlier feedback change no
--   feedback row (the contracts refuse them); responses are all kept in feedback_responses.
-- * feedback_clients: per (agent, client) its first feedback (the order of the spec's
--   getClients and readAllFeedback) and its last feedback index (getLastIndex).
-- * validation_requests: per request hash, the latest ValidationRequest, and of the
--   ValidationResponses that follow it the latest one and their count.

CREATE TABLE agents (
    chain_id           bigint NOT NULL,
    agent_id           numeric(78, 0) NOT NULL,  -- uint256; agent ids start at 0
    owner              text,          -- the latest Transfer's `to`; NULL before any transfer
    agent_wallet       text,          -- the reserved agentWallet metadata; NULL: unset
    wallet_block       bigint,        -- the block of the latest agentWallet MetadataSet
    wallet_updated_at  timestamptz,
    agent_uri          text,          -- Registered.agentURI / URIUpdated.newURI, the latest
    uri_block          bigint,        -- the block of that event
    uri_updated_at     timestamptz,
    registered_block   bigint,        -- the Registered event's block
    registered_at      timestamptz,
    first_block        bigint NOT NULL,  -- the first event naming the agent
    first_log_index    integer NOT NULL,
    first_at           timestamptz NOT NULL,
    last_block         bigint NOT NULL,  -- the last event naming the agent
    last_log_index     integer NOT NULL,
    last_at            timestamptz NOT NULL,
    PRIMARY KEY (chain_id, agent_id)
);

CREATE TABLE agent_metadata (
    chain_id     bigint NOT NULL,
    agent_id     numeric(78, 0) NOT NULL,
    key          text NOT NULL,
    value        bytea,
    block_number bigint NOT NULL,
    log_index    integer NOT NULL,
    block_time   timestamptz NOT NULL,
    PRIMARY KEY (chain_id, agent_id, key)
);

CREATE TABLE feedback (
    chain_id         bigint NOT NULL,
    agent_id         numeric(78, 0) NOT NULL,
    client_address   text NOT NULL,
    feedback_index   numeric(20, 0) NOT NULL,  -- uint64, 1-based per (agent, client)
    value            numeric(39, 0) NOT NULL,  -- int128 fixed point, exact ...
    value_decimals   smallint NOT NULL,        -- ... with this many decimals (0 before v1)
    tag1             text,                     -- NULL for the interim ABI (indexed only)
    tag2             text,
    endpoint         text,
    feedback_uri     text,
    feedback_hash    text,
    abi_version      text NOT NULL,            -- 'v1', 'interim' or 'v0'
    block_number     bigint NOT NULL,
    log_index        integer NOT NULL,
    block_time       timestamptz NOT NULL,
    transaction_hash text NOT NULL,
    revoked          boolean NOT NULL DEFAULT false,
    revoked_block    bigint,
    revoked_at       timestamptz,
    response_count   integer NOT NULL DEFAULT 0,
    -- Also the order of readAllFeedback within a client, and every lookup by agent.
    PRIMARY KEY (chain_id, agent_id, client_address, feedback_index)
);

CREATE TABLE feedback_clients (
    chain_id        bigint NOT NULL,
    agent_id        numeric(78, 0) NOT NULL,
    client_address  text NOT NULL,
    first_block     bigint NOT NULL,   -- the client's first feedback to the agent
    first_log_index integer NOT NULL,
    first_at        timestamptz NOT NULL,
    last_index      numeric(20, 0) NOT NULL,
    PRIMARY KEY (chain_id, agent_id, client_address)
);

-- getClients: an agent's clients in the order of their first feedback.
CREATE INDEX feedback_clients_order_idx
    ON feedback_clients (chain_id, agent_id, first_block, first_log_index);

CREATE TABLE feedback_responses (
    chain_id         bigint NOT NULL,
    agent_id         numeric(78, 0) NOT NULL,
    client_address   text NOT NULL,
    feedback_index   numeric(20, 0) NOT NULL,
    block_number     bigint NOT NULL,
    log_index        integer NOT NULL,
    responder        text NOT NULL,
    response_uri     text,
    response_hash    text,
    block_time       timestamptz NOT NULL,
    transaction_hash text NOT NULL,
    PRIMARY KEY (chain_id, agent_id, client_address, feedback_index, block_number, log_index)
);

CREATE TABLE validation_requests (
    chain_id          bigint NOT NULL,
    request_hash      text NOT NULL,
    validator_address text NOT NULL,
    agent_id          numeric(78, 0) NOT NULL,
    request_uri       text,
    block_number      bigint NOT NULL,
    log_index         integer NOT NULL,
    requested_at      timestamptz NOT NULL,
    transaction_hash  text NOT NULL,
    response          smallint,       -- the latest response, 0-100; NULL: none yet
    response_tag      text,
    response_uri      text,
    response_hash     text,
    responded_block   bigint,
    responded_at      timestamptz,
    response_count    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (chain_id, request_hash)
);

CREATE INDEX validation_requests_agent_idx
    ON validation_requests (chain_id, agent_id, block_number, log_index);
CREATE INDEX validation_requests_validator_idx
    ON validation_requests (chain_id, validator_address);

-- Applies the events of blocks [p_from_block, p_to_block] of a chain (of the agents
-- p_agents only, unless NULL) to the model, which must hold exactly the effect of the
-- earlier blocks' events of those agents. p_from_time / p_to_time, when given, bound the
-- events' block_time: the indexer passes its batch's, so that only the batch's partitions of
-- `events` are read. Custom plans: each statement is planned for its arguments (a NULL
-- p_agents or time bound drops out of the plan instead of hiding the indexes).
CREATE FUNCTION read_model_apply(
    p_chain_id bigint,
    p_from_block bigint,
    p_to_block bigint,
    p_agents numeric[] DEFAULT NULL,
    p_from_time timestamptz DEFAULT NULL,
    p_to_time timestamptz DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    -- Agents: the latest owner, wallet and URI of the range, and its first and last event.
    -- A column the range does not set stays as it was (NULL in the insert, coalesce below).
    INSERT INTO agents AS a (chain_id, agent_id, owner, agent_wallet, wallet_block,
                             wallet_updated_at, agent_uri, uri_block, uri_updated_at,
                             registered_block, registered_at, first_block, first_log_index,
                             first_at, last_block, last_log_index, last_at)
    SELECT p_chain_id, s.agent_id, s.owner[1], s.wallet[1], s.wallet_block[1],
           s.wallet_time[1], s.uri[1], s.uri_block[1], s.uri_time[1], s.registered_block[1],
           s.registered_time[1], s.first[1], s.first[2], s.first_time, s.last[1], s.last[2],
           s.last_time
    FROM (
        -- The identity events are few: sorting them per aggregate costs little. Positions
        -- compare as arrays [block_number, log_index].
        SELECT e.agent_id,
               array_agg(e.to_address ORDER BY e.block_number DESC, e.log_index DESC)
                   FILTER (WHERE e.event_type = 'Transfer') AS owner,
               array_agg(CASE WHEN length(e.metadata_value) = 20
                              THEN '0x' || encode(e.metadata_value, 'hex') END
                         ORDER BY e.block_number DESC, e.log_index DESC)
                   FILTER (WHERE e.event_type = 'MetadataSet'
                           AND e.metadata_key = 'agentWallet') AS wallet,
               array_agg(e.block_number ORDER BY e.block_number DESC, e.log_index DESC)
                   FILTER (WHERE e.event_type = 'MetadataSet'
                           AND e.metadata_key = 'agentWallet') AS wallet_block,
               array_agg(e.block_time ORDER BY e.block_number DESC, e.log_index DESC)
                   FILTER (WHERE e.event_type = 'MetadataSet'
                           AND e.metadata_key = 'agentWallet') AS wallet_time,
               array_agg(e.token_uri ORDER BY e.block_number DESC, e.log_index DESC)
                   FILTER (WHERE e.event_type IN ('Registered', 'URIUpdated')) AS uri,
               array_agg(e.block_number ORDER BY e.block_number DESC, e.log_index DESC)
                   FILTER (WHERE e.event_type IN ('Registered', 'URIUpdated')) AS uri_block,
               array_agg(e.block_time ORDER BY e.block_number DESC, e.log_index DESC)
                   FILTER (WHERE e.event_type IN ('Registered', 'URIUpdated')) AS uri_time,
               array_agg(e.block_number ORDER BY e.block_number DESC, e.log_index DESC)
                   FILTER (WHERE e.event_type = 'Registered') AS registered_block,
               array_agg(e.block_time ORDER BY e.block_number DESC, e.log_index DESC)
                   FILTER (WHERE e.event_type = 'Registered') AS registered_time,
               min(ARRAY[e.block_number, e.log_index]) AS first,
               max(ARRAY[e.block_number, e.log_index]) AS last,
               min(e.block_time) AS first_time,
               max(e.block_time) AS last_time
        FROM events AS e
        WHERE e.chain_id = p_chain_id AND e.block_number BETWEEN p_from_block AND p_to_block
          AND (p_agents IS NULL OR e.agent_id = ANY (p_agents))
          AND (p_from_time IS NULL OR e.block_time >= p_from_time)
          AND (p_to_time IS NULL OR e.block_time <= p_to_time)
          AND e.agent_id IS NOT NULL
        GROUP BY e.agent_id
    ) AS s
    ON CONFLICT (chain_id, agent_id) DO UPDATE
    SET owner = coalesce(EXCLUDED.owner, a.owner),
        agent_wallet = CASE WHEN EXCLUDED.wallet_block IS NULL THEN a.agent_wallet
                            ELSE EXCLUDED.agent_wallet END,
        wallet_block = coalesce(EXCLUDED.wallet_block, a.wallet_block),
        wallet_updated_at = coalesce(EXCLUDED.wallet_updated_at, a.wallet_updated_at),
        agent_uri = CASE WHEN EXCLUDED.uri_block IS NULL THEN a.agent_uri
                         ELSE EXCLUDED.agent_uri END,
        uri_block = coalesce(EXCLUDED.uri_block, a.uri_block),
        uri_updated_at = coalesce(EXCLUDED.uri_updated_at, a.uri_updated_at),
        registered_block = coalesce(EXCLUDED.registered_block, a.registered_block),
        registered_at = coalesce(EXCLUDED.registered_at, a.registered_at),
        first_at = least(a.first_at, EXCLUDED.first_at),
        last_block = EXCLUDED.last_block,
        last_log_index = EXCLUDED.last_log_index,
        last_at = greatest(a.last_at, EXCLUDED.last_at);

    -- Other metadata: the latest value per key.
    INSERT INTO agent_metadata AS m (chain_id, agent_id, key, value, block_number, log_index,
                                     block_time)
    SELECT DISTINCT ON (e.agent_id, e.metadata_key)
           p_chain_id, e.agent_id, e.metadata_key, e.metadata_value, e.block_number,
           e.log_index, e.block_time
    FROM events AS e
    WHERE e.chain_id = p_chain_id AND e.block_number BETWEEN p_from_block AND p_to_block
      AND (p_agents IS NULL OR e.agent_id = ANY (p_agents))
      AND (p_from_time IS NULL OR e.block_time >= p_from_time)
      AND (p_to_time IS NULL OR e.block_time <= p_to_time)
      AND e.event_type = 'MetadataSet' AND e.agent_id IS NOT NULL
      AND e.metadata_key <> 'agentWallet'
    ORDER BY e.agent_id, e.metadata_key, e.block_number DESC, e.log_index DESC
    ON CONFLICT (chain_id, agent_id, key) DO UPDATE
    SET value = EXCLUDED.value, block_number = EXCLUDED.block_number,
        log_index = EXCLUDED.log_index, block_time = EXCLUDED.block_time;

    -- Feedback, and per client its first feedback and last index. A 'v0' row's index is its
    -- pair's running counter: the last index before the range (`base`), raised by every
    -- explicit index and by one for each 'v0' row. With n = the pair's 'v0' rows so far,
    -- that counter at a 'v0' row is greatest(base, max over earlier explicit rows of
    -- (index - n there)) + n.
    WITH given AS (
        SELECT e.agent_id, e.client_address, e.feedback_index, e.value, e.value_decimals,
               e.tag1, e.tag2, e.endpoint, e.file_uri, e.file_hash,
               coalesce(e.data ->> 'abi_version', 'v1') AS abi_version,
               e.block_number, e.log_index, e.block_time, e.transaction_hash,
               count(*) FILTER (WHERE e.feedback_index IS NULL) OVER pair AS v0_seen
        FROM events AS e
        WHERE e.chain_id = p_chain_id AND e.block_number BETWEEN p_from_block AND p_to_block
          AND (p_agents IS NULL OR e.agent_id = ANY (p_agents))
          AND (p_from_time IS NULL OR e.block_time >= p_from_time)
          AND (p_to_time IS NULL OR e.block_time <= p_to_time)
          AND e.event_type = 'NewFeedback' AND e.agent_id IS NOT NULL
          AND e.client_address IS NOT NULL AND e.value IS NOT NULL
        WINDOW pair AS (PARTITION BY e.agent_id, e.client_address
                        ORDER BY e.block_number, e.log_index)
    ), indexed AS (
        SELECT g.*,
               CASE WHEN g.feedback_index IS NOT NULL THEN g.feedback_index
                    ELSE greatest(
                        coalesce((SELECT c.last_index FROM feedback_clients AS c
                                  WHERE c.chain_id = p_chain_id AND c.agent_id = g.agent_id
                                    AND c.client_address = g.client_address), 0),
                        max(g.feedback_index - g.v0_seen) OVER pair
                    ) + g.v0_seen
               END AS idx
        FROM given AS g
        WINDOW pair AS (PARTITION BY g.agent_id, g.client_address
                        ORDER BY g.block_number, g.log_index)
    ), stored AS (
        INSERT INTO feedback AS f (chain_id, agent_id, client_address, feedback_index, value,
                                   value_decimals, tag1, tag2, endpoint, feedback_uri,
                                   feedback_hash, abi_version, block_number, log_index,
                                   block_time, transaction_hash)
        SELECT DISTINCT ON (i.agent_id, i.client_address, i.idx)
               p_chain_id, i.agent_id, i.client_address, i.idx, i.value,
               coalesce(i.value_decimals, 0), i.tag1, i.tag2, i.endpoint, i.file_uri,
               i.file_hash, i.abi_version, i.block_number, i.log_index, i.block_time,
               i.transaction_hash
        FROM indexed AS i
        ORDER BY i.agent_id, i.client_address, i.idx, i.block_number DESC, i.log_index DESC
        -- Feedback again under a key that exists (no contract does this; a derived 'v0'
        -- index could meet a later explicit one): the later one replaces it, afresh.
        ON CONFLICT (chain_id, agent_id, client_address, feedback_index) DO UPDATE
        SET value = EXCLUDED.value, value_decimals = EXCLUDED.value_decimals,
            tag1 = EXCLUDED.tag1, tag2 = EXCLUDED.tag2, endpoint = EXCLUDED.endpoint,
            feedback_uri = EXCLUDED.feedback_uri, feedback_hash = EXCLUDED.feedback_hash,
            abi_version = EXCLUDED.abi_version, block_number = EXCLUDED.block_number,
            log_index = EXCLUDED.log_index, block_time = EXCLUDED.block_time,
            transaction_hash = EXCLUDED.transaction_hash, revoked = false,
            revoked_block = NULL, revoked_at = NULL, response_count = 0
        WHERE (f.block_number, f.log_index) < (EXCLUDED.block_number, EXCLUDED.log_index)
    )
    INSERT INTO feedback_clients AS c (chain_id, agent_id, client_address, first_block,
                                       first_log_index, first_at, last_index)
    SELECT DISTINCT ON (i.agent_id, i.client_address)
           p_chain_id, i.agent_id, i.client_address, i.block_number, i.log_index,
           i.block_time, max(i.idx) OVER (PARTITION BY i.agent_id, i.client_address)
    FROM indexed AS i
    ORDER BY i.agent_id, i.client_address, i.block_number, i.log_index
    ON CONFLICT (chain_id, agent_id, client_address) DO UPDATE
    SET last_index = greatest(c.last_index, EXCLUDED.last_index);

    -- Revocations of earlier feedback: the first one after it counts.
    UPDATE feedback AS f
    SET revoked = true, revoked_block = r.block_number, revoked_at = r.block_time
    FROM (
        SELECT DISTINCT ON (e.agent_id, e.client_address, e.feedback_index)
               e.agent_id, e.client_address, e.feedback_index, e.block_number, e.block_time
        FROM events AS e
        JOIN feedback AS given
          ON given.chain_id = p_chain_id AND given.agent_id = e.agent_id
         AND given.client_address = e.client_address
         AND given.feedback_index = e.feedback_index
        WHERE e.chain_id = p_chain_id AND e.block_number BETWEEN p_from_block AND p_to_block
          AND (p_agents IS NULL OR e.agent_id = ANY (p_agents))
          AND (p_from_time IS NULL OR e.block_time >= p_from_time)
          AND (p_to_time IS NULL OR e.block_time <= p_to_time)
          AND e.event_type = 'FeedbackRevoked' AND NOT given.revoked
          AND (e.block_number, e.log_index) > (given.block_number, given.log_index)
        ORDER BY e.agent_id, e.client_address, e.feedback_index, e.block_number, e.log_index
    ) AS r
    WHERE f.chain_id = p_chain_id AND f.agent_id = r.agent_id
      AND f.client_address = r.client_address AND f.feedback_index = r.feedback_index;

    -- Responses: every one is kept; each counts for the feedback it follows.
    INSERT INTO feedback_responses (chain_id, agent_id, client_address, feedback_index,
                                    block_number, log_index, responder, response_uri,
                                    response_hash, block_time, transaction_hash)
    SELECT p_chain_id, e.agent_id, e.client_address, e.feedback_index, e.block_number,
           e.log_index, e.responder, e.response_uri, e.response_hash, e.block_time,
           e.transaction_hash
    FROM events AS e
    WHERE e.chain_id = p_chain_id AND e.block_number BETWEEN p_from_block AND p_to_block
      AND (p_agents IS NULL OR e.agent_id = ANY (p_agents))
      AND (p_from_time IS NULL OR e.block_time >= p_from_time)
      AND (p_to_time IS NULL OR e.block_time <= p_to_time)
      AND e.event_type = 'ResponseAppended' AND e.agent_id IS NOT NULL
      AND e.client_address IS NOT NULL AND e.feedback_index IS NOT NULL;

    UPDATE feedback AS f
    SET response_count = f.response_count + r.responses
    FROM (
        SELECT e.agent_id, e.client_address, e.feedback_index, count(*) AS responses
        FROM events AS e
        JOIN feedback AS given
          ON given.chain_id = p_chain_id AND given.agent_id = e.agent_id
         AND given.client_address = e.client_address
         AND given.feedback_index = e.feedback_index
        WHERE e.chain_id = p_chain_id AND e.block_number BETWEEN p_from_block AND p_to_block
          AND (p_agents IS NULL OR e.agent_id = ANY (p_agents))
          AND (p_from_time IS NULL OR e.block_time >= p_from_time)
          AND (p_to_time IS NULL OR e.block_time <= p_to_time)
          AND e.event_type = 'ResponseAppended'
          AND (e.block_number, e.log_index) > (given.block_number, given.log_index)
        GROUP BY e.agent_id, e.client_address, e.feedback_index
    ) AS r
    WHERE f.chain_id = p_chain_id AND f.agent_id = r.agent_id
      AND f.client_address = r.client_address AND f.feedback_index = r.feedback_index;

    -- Validation requests (a request made again starts afresh: no contract allows it) ...
    INSERT INTO validation_requests AS v (chain_id, request_hash, validator_address, agent_id,
                                          request_uri, block_number, log_index, requested_at,
                                          transaction_hash)
    SELECT DISTINCT ON (e.request_hash)
           p_chain_id, e.request_hash, e.validator_address, e.agent_id, e.request_uri,
           e.block_number, e.log_index, e.block_time, e.transaction_hash
    FROM events AS e
    WHERE e.chain_id = p_chain_id AND e.block_number BETWEEN p_from_block AND p_to_block
      AND (p_agents IS NULL OR e.agent_id = ANY (p_agents))
      AND (p_from_time IS NULL OR e.block_time >= p_from_time)
      AND (p_to_time IS NULL OR e.block_time <= p_to_time)
      AND e.event_type = 'ValidationRequest' AND e.request_hash IS NOT NULL
      AND e.validator_address IS NOT NULL AND e.agent_id IS NOT NULL
    ORDER BY e.request_hash, e.block_number DESC, e.log_index DESC
    ON CONFLICT (chain_id, request_hash) DO UPDATE
    SET validator_address = EXCLUDED.validator_address, agent_id = EXCLUDED.agent_id,
        request_uri = EXCLUDED.request_uri, block_number = EXCLUDED.block_number,
        log_index = EXCLUDED.log_index, requested_at = EXCLUDED.requested_at,
        transaction_hash = EXCLUDED.transaction_hash, response = NULL, response_tag = NULL,
        response_uri = NULL, response_hash = NULL, responded_block = NULL,
        responded_at = NULL, response_count = 0
    WHERE (v.block_number, v.log_index) < (EXCLUDED.block_number, EXCLUDED.log_index);

    -- ... and their responses: the latest one after the request, and how many there were.
    UPDATE validation_requests AS v
    SET response = r.response, response_tag = r.tag, response_uri = r.response_uri,
        response_hash = r.response_hash, responded_block = r.block_number,
        responded_at = r.block_time, response_count = v.response_count + r.responses
    FROM (
        SELECT DISTINCT ON (e.request_hash)
               e.request_hash, e.response, e.tag, e.response_uri, e.response_hash,
               e.block_number, e.block_time,
               count(*) OVER (PARTITION BY e.request_hash) AS responses
        FROM events AS e
        JOIN validation_requests AS request
          ON request.chain_id = p_chain_id AND request.request_hash = e.request_hash
        WHERE e.chain_id = p_chain_id AND e.block_number BETWEEN p_from_block AND p_to_block
          AND (p_agents IS NULL OR e.agent_id = ANY (p_agents))
          AND (p_from_time IS NULL OR e.block_time >= p_from_time)
          AND (p_to_time IS NULL OR e.block_time <= p_to_time)
          AND e.event_type = 'ValidationResponse'
          AND (e.block_number, e.log_index) > (request.block_number, request.log_index)
        ORDER BY e.request_hash, e.block_number DESC, e.log_index DESC
    ) AS r
    WHERE v.chain_id = p_chain_id AND v.request_hash = r.request_hash;
END
$$;

-- Forgets the model of a chain (of the agents p_agents only, unless NULL).
CREATE FUNCTION read_model_clear(p_chain_id bigint, p_agents numeric[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    DELETE FROM agents
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
    DELETE FROM agent_metadata
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
    DELETE FROM feedback
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
    DELETE FROM feedback_clients
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
    DELETE FROM feedback_responses
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
    DELETE FROM validation_requests
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
END
$$;

-- Rebuilds the model of a chain (of the agents p_agents only, unless NULL) from its events
-- up to block p_to_block (all of them when NULL).
CREATE FUNCTION read_model_rebuild(
    p_chain_id bigint,
    p_agents numeric[] DEFAULT NULL,
    p_to_block bigint DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM read_model_clear(p_chain_id, p_agents);
    PERFORM read_model_apply(p_chain_id, 0, coalesce(p_to_block, 9223372036854775807),
                             p_agents);
END
$$;

-- A reorg: called before the events above p_fork_block are deleted, it rebuilds the agents
-- those events name from the events at or below the fork. A fork below block 0 forgets the
-- chain's whole model.
CREATE FUNCTION read_model_roll_back(p_chain_id bigint, p_fork_block bigint)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    affected numeric[];
BEGIN
    IF p_fork_block < 0 THEN
        PERFORM read_model_clear(p_chain_id);
        RETURN;
    END IF;
    SELECT array_agg(DISTINCT agent_id) INTO affected
    FROM events
    WHERE chain_id = p_chain_id AND block_number > p_fork_block AND agent_id IS NOT NULL;
    IF affected IS NOT NULL THEN
        PERFORM read_model_rebuild(p_chain_id, affected, p_fork_block);
    END IF;
END
$$;

-- The model of the events stored before this migration.
SELECT read_model_rebuild(chain_id) FROM (SELECT DISTINCT chain_id FROM events) AS chains;

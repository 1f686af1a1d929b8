-- agent_metadata keyed by its keys again (a key too long for the index makes this fail:
-- such a key could not be stored before), and read_model_apply as migration 45 left it.
DROP FUNCTION read_model_apply(bigint, bigint, bigint, numeric[], timestamptz, timestamptz,
                               boolean, text[]);

CREATE FUNCTION read_model_apply(
    p_chain_id bigint,
    p_from_block bigint,
    p_to_block bigint,
    p_agents numeric[] DEFAULT NULL,
    p_from_time timestamptz DEFAULT NULL,
    p_to_time timestamptz DEFAULT NULL,
    p_plain_feedback boolean DEFAULT true,
    p_event_types text[] DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SET work_mem = '64MB'
AS $$
DECLARE
    feedback_done boolean;
BEGIN
    -- Agents: the latest owner, wallet and URI of the range, and its first and last event.
    -- A column the range does not set stays as it was (NULL in the insert, coalesce below).
    INSERT INTO agents AS a (chain_id, agent_id, owner, agent_wallet, wallet_block,
                             wallet_updated_at, agent_uri, uri_block, uri_updated_at,
                             registered_block, registered_at, first_block, first_log_index,
                             first_at, last_block, last_log_index, last_at)
    SELECT p_chain_id, s.agent_id, s.owner[1], s.wallet[1], s.wallet_at[1], s.wallet_time,
           s.uri[1], s.uri_at[1], s.uri_time, s.registered_at[1], s.registered_time,
           s.first[1], s.first[2], s.first_time, s.last[1], s.last[2], s.last_time
    FROM (
        -- An aggregate with ORDER BY sorts once per agent, whether or not its FILTER keeps
        -- rows: over a batch of feedback, which names thousands of agents, the nine of them
        -- cost a fifth of this statement. Only the three text values sort now; the blocks are
        -- the latest positions' (which compare as arrays [block_number, log_index]), and the
        -- times the latest block times, which are those positions' times: a block's time is
        -- never below its parent's (first_at and last_at below count on that as well).
        SELECT e.agent_id,
               array_agg(e.to_address ORDER BY e.block_number DESC, e.log_index DESC)
                   FILTER (WHERE e.event_type = 'Transfer') AS owner,
               array_agg(CASE WHEN length(e.metadata_value) = 20
                              THEN '0x' || encode(e.metadata_value, 'hex') END
                         ORDER BY e.block_number DESC, e.log_index DESC)
                   FILTER (WHERE e.event_type = 'MetadataSet'
                           AND e.metadata_key = 'agentWallet') AS wallet,
               max(ARRAY[e.block_number, e.log_index])
                   FILTER (WHERE e.event_type = 'MetadataSet'
                           AND e.metadata_key = 'agentWallet') AS wallet_at,
               max(e.block_time)
                   FILTER (WHERE e.event_type = 'MetadataSet'
                           AND e.metadata_key = 'agentWallet') AS wallet_time,
               array_agg(e.token_uri ORDER BY e.block_number DESC, e.log_index DESC)
                   FILTER (WHERE e.event_type IN ('Registered', 'URIUpdated')) AS uri,
               max(ARRAY[e.block_number, e.log_index])
                   FILTER (WHERE e.event_type IN ('Registered', 'URIUpdated')) AS uri_at,
               max(e.block_time)
                   FILTER (WHERE e.event_type IN ('Registered', 'URIUpdated')) AS uri_time,
               max(ARRAY[e.block_number, e.log_index])
                   FILTER (WHERE e.event_type = 'Registered') AS registered_at,
               max(e.block_time)
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
    IF p_event_types IS NULL OR 'MetadataSet' = ANY (p_event_types) THEN
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
          AND (p_from_time IS NULL OR e.registry = 'identity')
          AND e.event_type = 'MetadataSet' AND e.agent_id IS NOT NULL
          AND e.metadata_key <> 'agentWallet'
        ORDER BY e.agent_id, e.metadata_key, e.block_number DESC, e.log_index DESC
        ON CONFLICT (chain_id, agent_id, key) DO UPDATE
        SET value = EXCLUDED.value, block_number = EXCLUDED.block_number,
            log_index = EXCLUDED.log_index, block_time = EXCLUDED.block_time;
    END IF;

    -- Feedback, and per client its first feedback and last index. Usually each feedback of
    -- the range carries its own index (the 'v0' ABI had none) and is the first under its
    -- key: then the events go in as they are. A NULL index or a key met again raises
    -- (not_null_violation, unique_violation), which undoes the attempt (the block is a
    -- subtransaction), and the statement after it works each one out. The attempt skips
    -- that statement's windows and sorts over whole rows, and its speculative inserts.
    IF p_event_types IS NULL OR 'NewFeedback' = ANY (p_event_types) THEN
        feedback_done := false;
        IF p_plain_feedback THEN
            BEGIN
                WITH stored AS (
                    INSERT INTO feedback (chain_id, agent_id, client_address, feedback_index, value,
                                          value_decimals, tag1, tag2, endpoint, feedback_uri,
                                          feedback_hash, abi_version, block_number, log_index,
                                          block_time, transaction_hash)
                    SELECT p_chain_id, e.agent_id, e.client_address, e.feedback_index, e.value,
                           coalesce(e.value_decimals, 0), e.tag1, e.tag2, e.endpoint, e.file_uri,
                           e.file_hash, coalesce(e.data ->> 'abi_version', 'v1'), e.block_number,
                           e.log_index, e.block_time, e.transaction_hash
                    FROM events AS e
                    WHERE e.chain_id = p_chain_id
                      AND e.block_number BETWEEN p_from_block AND p_to_block
                      AND (p_agents IS NULL OR e.agent_id = ANY (p_agents))
                      AND (p_from_time IS NULL OR e.block_time >= p_from_time)
                      AND (p_to_time IS NULL OR e.block_time <= p_to_time)
                      AND (p_from_time IS NULL OR e.registry = 'reputation')
                      AND e.event_type = 'NewFeedback' AND e.agent_id IS NOT NULL
                      AND e.client_address IS NOT NULL AND e.value IS NOT NULL
                    RETURNING agent_id, client_address, feedback_index, block_number, log_index,
                              block_time
                )
                INSERT INTO feedback_clients AS c (chain_id, agent_id, client_address, first_block,
                                                   first_log_index, first_at, last_index)
                SELECT DISTINCT ON (s.agent_id, s.client_address)
                       p_chain_id, s.agent_id, s.client_address, s.block_number, s.log_index,
                       s.block_time,
                       max(s.feedback_index) OVER (PARTITION BY s.agent_id, s.client_address)
                FROM stored AS s
                ORDER BY s.agent_id, s.client_address, s.block_number, s.log_index
                ON CONFLICT (chain_id, agent_id, client_address) DO UPDATE
                SET last_index = greatest(c.last_index, EXCLUDED.last_index);
                feedback_done := true;
            EXCEPTION WHEN not_null_violation OR unique_violation THEN
                feedback_done := false;
            END;
        END IF;

        IF NOT feedback_done THEN
            -- Each feedback's index, and the latest feedback under each key. A 'v0' row's index
            -- is its pair's running counter: the last index before the range (`base`), raised by
            -- every explicit index and by one for each 'v0' row. With n = the pair's 'v0' rows so
            -- far, that counter at a 'v0' row is greatest(base, max over earlier explicit rows of
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
                  AND (p_from_time IS NULL OR e.registry = 'reputation')
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
        END IF;
    END IF;

    -- Revocations of earlier feedback: the first one after it counts.
    IF p_event_types IS NULL OR 'FeedbackRevoked' = ANY (p_event_types) THEN
        UPDATE feedback AS f
        SET revoked = true, revoked_block = r.block_number, revoked_at = r.block_time
        FROM (
            SELECT DISTINCT ON (e.agent_id, e.client_address, e.feedback_index)
                   e.agent_id, e.client_address, e.feedback_index, e.block_number, e.block_time
            FROM events AS e
            CROSS JOIN LATERAL (
                SELECT FROM feedback AS given
                WHERE given.chain_id = p_chain_id AND given.agent_id = e.agent_id
                  AND given.client_address = e.client_address
                  AND given.feedback_index = e.feedback_index
                  AND NOT given.revoked
                  AND (e.block_number, e.log_index) > (given.block_number, given.log_index)
                LIMIT 1
            ) AS given
            WHERE e.chain_id = p_chain_id AND e.block_number BETWEEN p_from_block AND p_to_block
              AND (p_agents IS NULL OR e.agent_id = ANY (p_agents))
              AND (p_from_time IS NULL OR e.block_time >= p_from_time)
              AND (p_to_time IS NULL OR e.block_time <= p_to_time)
              AND (p_from_time IS NULL OR e.registry = 'reputation')
              AND e.event_type = 'FeedbackRevoked'
            ORDER BY e.agent_id, e.client_address, e.feedback_index, e.block_number, e.log_index
        ) AS r
        WHERE f.chain_id = p_chain_id AND f.agent_id = r.agent_id
          AND f.client_address = r.client_address AND f.feedback_index = r.feedback_index;
    END IF;

    -- Responses: every one is kept; each counts for the feedback it follows.
    IF p_event_types IS NULL OR 'ResponseAppended' = ANY (p_event_types) THEN
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
          AND (p_from_time IS NULL OR e.registry = 'reputation')
          AND e.event_type = 'ResponseAppended' AND e.agent_id IS NOT NULL
          AND e.client_address IS NOT NULL AND e.feedback_index IS NOT NULL;

        UPDATE feedback AS f
        SET response_count = f.response_count + r.responses
        FROM (
            SELECT e.agent_id, e.client_address, e.feedback_index, count(*) AS responses
            FROM events AS e
            CROSS JOIN LATERAL (
                SELECT FROM feedback AS given
                WHERE given.chain_id = p_chain_id AND given.agent_id = e.agent_id
                  AND given.client_address = e.client_address
                  AND given.feedback_index = e.feedback_index
                  AND (e.block_number, e.log_index) > (given.block_number, given.log_index)
                LIMIT 1
            ) AS given
            WHERE e.chain_id = p_chain_id AND e.block_number BETWEEN p_from_block AND p_to_block
              AND (p_agents IS NULL OR e.agent_id = ANY (p_agents))
              AND (p_from_time IS NULL OR e.block_time >= p_from_time)
              AND (p_to_time IS NULL OR e.block_time <= p_to_time)
              AND (p_from_time IS NULL OR e.registry = 'reputation')
              AND e.event_type = 'ResponseAppended'
            GROUP BY e.agent_id, e.client_address, e.feedback_index
        ) AS r
        WHERE f.chain_id = p_chain_id AND f.agent_id = r.agent_id
          AND f.client_address = r.client_address AND f.feedback_index = r.feedback_index;
    END IF;

    -- Validation requests (a request made again starts afresh: no contract allows it) ...
    IF p_event_types IS NULL OR 'ValidationRequest' = ANY (p_event_types) THEN
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
          AND (p_from_time IS NULL OR e.registry = 'validation')
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
    END IF;

    -- ... and their responses: the latest one after the request, and how many there were.
    IF p_event_types IS NULL OR 'ValidationResponse' = ANY (p_event_types) THEN
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
            CROSS JOIN LATERAL (
                SELECT FROM validation_requests AS request
                WHERE request.chain_id = p_chain_id AND request.request_hash = e.request_hash
                  AND (e.block_number, e.log_index) > (request.block_number, request.log_index)
                LIMIT 1
            ) AS request
            WHERE e.chain_id = p_chain_id AND e.block_number BETWEEN p_from_block AND p_to_block
              AND (p_agents IS NULL OR e.agent_id = ANY (p_agents))
              AND (p_from_time IS NULL OR e.block_time >= p_from_time)
              AND (p_to_time IS NULL OR e.block_time <= p_to_time)
              AND (p_from_time IS NULL OR e.registry = 'validation')
              AND e.event_type = 'ValidationResponse'
            ORDER BY e.request_hash, e.block_number DESC, e.log_index DESC
        ) AS r
        WHERE v.chain_id = p_chain_id AND v.request_hash = r.request_hash;
    END IF;
END
$$;

ALTER TABLE agent_metadata DROP CONSTRAINT agent_metadata_pkey;
ALTER TABLE agent_metadata ADD PRIMARY KEY (chain_id, agent_id, key);
ALTER TABLE agent_metadata DROP COLUMN key_digest;

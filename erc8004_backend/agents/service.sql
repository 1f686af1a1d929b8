-- agent_listing --
-- Agents with their registration file (as read from the current URI) and their feedback
-- counts (agent_feedback_stats, migration 23: every agent has a row), filtered, one page in
-- the order `{order}` after the cursor `{after}` (service.py writes both out from its own
-- sort keys). Every filter is optional: with custom plans the absent ones fold away. The
-- file's fields are columns (migration 23), so that a filter on them reads no JSON.
-- A text is matched as ILIKE would against the file's name and description: LIKE of its
-- lower() against them folded to lower case when the file was stored (migration 39). No
-- trigram index (pg_trgm is not among the migrations' extensions), so it reads the folded
-- name and description of every registration file, then joins the agents that match.
SELECT a.chain_id, a.agent_id, a.owner, a.agent_wallet, a.agent_uri, a.registered_at,
       a.first_at, a.last_at, r.status AS registration_status, r.file_name AS name,
       r.file_description AS description,
       CASE WHEN jsonb_typeof(r.document -> 'image') = 'string'
            THEN r.document ->> 'image' END AS image,
       r.mcp_endpoint, r.a2a_endpoint, r.file_active AS active,
       r.file_x402_support AS x402_support, s.feedback_count, s.revoked_count,
       s.client_count
FROM agents AS a
JOIN agent_feedback_stats AS s ON s.chain_id = a.chain_id AND s.agent_id = a.agent_id
-- The file of the current URI: a row holds the URI it digests, and comparing URIs spares
-- hashing every agent's URI (and lets the planner estimate the join).
LEFT JOIN agent_registrations AS r
    ON r.chain_id = a.chain_id AND r.agent_id = a.agent_id AND r.agent_uri = a.agent_uri
WHERE (%(chain_id)s::bigint IS NULL OR a.chain_id = %(chain_id)s::bigint)
  AND (%(owner)s::text IS NULL OR a.owner = %(owner)s::text)
  AND (%(wallet)s::text IS NULL OR a.agent_wallet = %(wallet)s::text)
  AND (%(has_mcp)s::boolean IS NULL
       OR (r.mcp_endpoint IS NOT NULL) = %(has_mcp)s::boolean)
  AND (%(has_a2a)s::boolean IS NULL
       OR (r.a2a_endpoint IS NOT NULL) = %(has_a2a)s::boolean)
  AND (%(active)s::boolean IS NULL OR r.file_active = %(active)s::boolean)
  AND (%(x402)s::boolean IS NULL OR r.file_x402_support = %(x402)s::boolean)
  AND (%(text_pattern)s::text IS NULL
       OR r.file_name_folded LIKE lower(%(text_pattern)s::text)
       OR r.file_description_folded LIKE lower(%(text_pattern)s::text))
  AND (%(min_feedback)s::bigint IS NULL OR s.feedback_count >= %(min_feedback)s::bigint)
  AND {after}
ORDER BY {order}
LIMIT %(limit)s

-- agent_exists --
SELECT EXISTS (
    SELECT FROM agents WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
) AS known

-- model_stamp --
-- The chain's stamp (migration 37): new at every change of its feedback in the model.
SELECT stamp FROM read_model_stamps WHERE chain_id = %(chain_id)s

-- agent_stats --
SELECT coalesce(s.feedback_count, 0) AS feedback_count,
       coalesce(s.revoked_count, 0) AS revoked_count,
       coalesce(s.client_count, 0) AS client_count,
       (SELECT count(*) FROM validation_requests AS v
        WHERE v.chain_id = %(chain_id)s AND v.agent_id = %(agent_id)s::numeric)
           AS validation_count
FROM (SELECT) AS one
LEFT JOIN agent_feedback_stats AS s
    ON s.chain_id = %(chain_id)s AND s.agent_id = %(agent_id)s::numeric

-- lens_votes --
-- What a lens reads of the agents' feedback, with its choices made here rather than over
-- every row in Python (an agent can have tens of thousands): one row per agent with
-- feedback, from one scan of its feedback by the primary key (LATERAL, per agent). Each
-- feedback's exclusion (lenses.EXCLUSION_REASONS in order: 1 revoked, 2 untrusted client,
-- 3 tag mismatch; 0 none, standing), then:
-- `counts`: its feedback, those excluded for each reason, the standing ones, the clients
-- excluded as untrusted, and for its activity the distinct clients (as migration 23 counts
-- them), the revoked and the answered feedback;
-- the standing feedback in the scan's order (backwards: by client, then highest index
-- first, so that under `latest` each client's vote is the first of its run; service.py
-- takes those), as arrays, a column each, read in C rather than as a Python object per row:
-- clients; values x 10^(18 - decimals) as text (an int128 and more, read exactly by
-- Python's int), by appending zeros (in_18_decimals); decimals; and block times as
-- PostgreSQL stores them, 8 bytes each (microseconds since 2000-01-01), in one bytea that
-- Python unpacks at once (exact, and cheaper on both sides than any conversion per row).
-- The rest of each feedback (index, tags, revocation, responses) is read when the caller
-- asks for the counted feedback (lens_entry_columns), else not (lens_no_entry_columns).
-- A client is untrusted when it is not in the allowlist or is among the clients below the
-- lens's minimums (`below`: service.py writes out one of lens_clients_* below; the clients'
-- chain-wide counts are not read without minimums), looked up in a hash of those.
WITH below AS MATERIALIZED (
    {history}
), agents AS MATERIALIZED (
    SELECT DISTINCT agent_id FROM unnest(%(agent_ids)s::numeric[]) AS given(agent_id)
)
SELECT a.agent_id::text,
       ARRAY[c.feedback, c.revoked_out, c.untrusted_out, c.mismatched, c.standing,
             c.untrusted_clients, s.client_count, c.revoked, c.responded] AS counts,
       c.clients, c.amounts, c.decimals, c.times, c.feedback_indexes, c.tag1s, c.tag2s,
       c.revoked_flags, c.response_counts
FROM agents AS a
CROSS JOIN LATERAL (
    SELECT count(*) AS feedback, count(*) FILTER (WHERE v.reason = 1) AS revoked_out,
           count(*) FILTER (WHERE v.reason = 2) AS untrusted_out,
           count(*) FILTER (WHERE v.reason = 3) AS mismatched,
           count(*) FILTER (WHERE v.reason = 0) AS standing,
           count(DISTINCT v.client_address) FILTER (WHERE v.reason = 2) AS untrusted_clients,
           count(*) FILTER (WHERE v.revoked) AS revoked,
           count(*) FILTER (WHERE v.response_count > 0) AS responded,
           array_agg(v.client_address) FILTER (WHERE v.reason = 0) AS clients,
           array_agg(CASE WHEN v.value_decimals <= 18
                          THEN v.value::text || repeat('0', 18 - v.value_decimals)
                          ELSE v.value::text END) FILTER (WHERE v.reason = 0) AS amounts,
           array_agg(v.value_decimals) FILTER (WHERE v.reason = 0) AS decimals,
           string_agg(timestamptz_send(v.block_time), ''::bytea)
               FILTER (WHERE v.reason = 0) AS times,
           {entries}
    FROM (
        SELECT f.client_address, f.feedback_index, f.value, f.value_decimals, f.block_time,
               f.revoked, f.response_count, f.tag1, f.tag2,
               CASE WHEN f.revoked AND NOT %(include_revoked)s THEN 1
                    WHEN f.client_address IN (SELECT b.client_address FROM below AS b)
                      OR NOT (%(allowlist)s::text[] IS NULL
                              OR f.client_address = ANY (%(allowlist)s::text[])) THEN 2
                    WHEN (%(tag1)s::text IS NOT NULL AND coalesce(f.tag1, '') <> %(tag1)s::text)
                      OR (%(tag2)s::text IS NOT NULL AND coalesce(f.tag2, '') <> %(tag2)s::text)
                        THEN 3
                    ELSE 0
               END AS reason
        FROM feedback AS f
        WHERE f.chain_id = %(chain_id)s AND f.agent_id = a.agent_id
        -- (Ordered here, by the primary key backwards: a subquery with an ORDER BY is not
        -- merged into the aggregate, so each feedback is classified once, not once per use.)
        ORDER BY f.client_address DESC, f.feedback_index DESC
    ) AS v
) AS c
JOIN agent_feedback_stats AS s ON s.chain_id = %(chain_id)s AND s.agent_id = a.agent_id
WHERE c.feedback > 0

-- lens_entry_columns --
-- lens_votes's arrays that make the votes lenses.FeedbackEntry values.
array_agg(v.feedback_index::text) FILTER (WHERE v.reason = 0) AS feedback_indexes,
array_agg(coalesce(v.tag1, '')) FILTER (WHERE v.reason = 0) AS tag1s,
array_agg(coalesce(v.tag2, '')) FILTER (WHERE v.reason = 0) AS tag2s,
array_agg(v.revoked) FILTER (WHERE v.reason = 0) AS revoked_flags,
array_agg(v.response_count) FILTER (WHERE v.reason = 0) AS response_counts

-- lens_no_entry_columns --
NULL::text[] AS feedback_indexes, NULL::text[] AS tag1s, NULL::text[] AS tag2s,
NULL::boolean[] AS revoked_flags, NULL::integer[] AS response_counts

-- lens_clients_history --
-- lens_votes's `below` for a lens with minimums: the agents' clients below them (NULL
-- min_feedback or min_agents: none), from their chain-wide counts (client_feedback_stats),
-- so that only the clients below are hashed, and only the agents' clients are looked at.
-- (Every client with feedback has a row: migration 23's triggers make it with its first
-- feedback and never delete it.)
SELECT h.client_address
FROM feedback_clients AS c
JOIN client_feedback_stats AS h
    ON h.chain_id = c.chain_id AND h.client_address = c.client_address
WHERE c.chain_id = %(chain_id)s AND c.agent_id = ANY (%(agent_ids)s::numeric[])
  AND ((%(min_agents)s::bigint IS NOT NULL AND h.agent_count < %(min_agents)s::bigint)
       OR (%(min_feedback)s::numeric IS NOT NULL
           AND h.feedback_count < %(min_feedback)s::numeric))

-- lens_clients_no_history --
-- lens_votes's `below` for a lens without minimums: no client is below them.
SELECT NULL::text AS client_address WHERE false

-- agent_client_stats --
-- The chain-wide history of every client of one agent.
SELECT cs.client_address, cs.feedback_count, cs.agent_count
FROM feedback_clients AS c
JOIN client_feedback_stats AS cs
    ON cs.chain_id = c.chain_id AND cs.client_address = c.client_address
WHERE c.chain_id = %(chain_id)s AND c.agent_id = %(agent_id)s::numeric

-- feedback_page_all_clients --
-- A page of the agent's feedback in readAllFeedback's order: clients by their first
-- feedback (first_block, first_log_index), then by index; after the cursor's
-- (first_block, first_log_index, feedback_index). The clients are read in order from
-- feedback_clients_order_idx and each one's feedback from the primary key, so that a page
-- stops early (an incremental sort adds the index within a client).
SELECT c.first_block AS key1, c.first_log_index::bigint AS key2, f.chain_id, f.agent_id,
       f.client_address, f.feedback_index, f.value, f.value_decimals, f.tag1, f.tag2,
       f.endpoint, f.feedback_uri, f.feedback_hash, f.abi_version, f.block_number,
       f.log_index, f.block_time, f.transaction_hash, f.revoked, f.revoked_block,
       f.revoked_at, f.response_count
FROM feedback_clients AS c
JOIN feedback AS f
    ON f.chain_id = c.chain_id AND f.agent_id = c.agent_id
   AND f.client_address = c.client_address
WHERE c.chain_id = %(chain_id)s AND c.agent_id = %(agent_id)s::numeric
  AND (%(after_key1)s::bigint IS NULL
       OR (c.first_block, c.first_log_index) >= (%(after_key1)s::bigint, %(after_key2)s::int))
  AND (%(after_key1)s::bigint IS NULL
       OR (c.first_block, c.first_log_index::bigint, f.feedback_index)
          > (%(after_key1)s::bigint, %(after_key2)s::bigint, %(after_index)s::numeric))
  AND (%(include_revoked)s OR NOT f.revoked)
  AND (coalesce(%(tag1)s, '') = '' OR f.tag1 = %(tag1)s)
  AND (coalesce(%(tag2)s, '') = '' OR f.tag2 = %(tag2)s)
ORDER BY c.first_block, c.first_log_index, f.feedback_index
LIMIT %(limit)s

-- feedback_page_given_clients --
-- A page of the feedback of the given clients, in the order given (a client given twice is
-- read twice, as readAllFeedback does), then by index; after the cursor's
-- (position, 0, feedback_index).
SELECT given.position AS key1, 0::bigint AS key2, f.chain_id, f.agent_id,
       f.client_address, f.feedback_index, f.value, f.value_decimals, f.tag1, f.tag2,
       f.endpoint, f.feedback_uri, f.feedback_hash, f.abi_version, f.block_number,
       f.log_index, f.block_time, f.transaction_hash, f.revoked, f.revoked_block,
       f.revoked_at, f.response_count
FROM unnest(%(clients)s::text[]) WITH ORDINALITY AS given(client_address, position)
JOIN feedback AS f
    ON f.chain_id = %(chain_id)s AND f.agent_id = %(agent_id)s::numeric
   AND f.client_address = given.client_address
WHERE (%(after_key1)s::bigint IS NULL
       OR (given.position, f.feedback_index)
          > (%(after_key1)s::bigint, %(after_index)s::numeric))
  AND (%(include_revoked)s OR NOT f.revoked)
  AND (coalesce(%(tag1)s, '') = '' OR f.tag1 = %(tag1)s)
  AND (coalesce(%(tag2)s, '') = '' OR f.tag2 = %(tag2)s)
ORDER BY given.position, f.feedback_index
LIMIT %(limit)s

-- page_responses --
-- The first responses (in chain order, at most %(per_feedback)s each) to the given
-- feedback of one agent; response_count on the feedback says how many there are.
SELECT k.client_address, k.feedback_index, r.responder, r.response_uri, r.response_hash,
       r.block_number, r.log_index, r.block_time, r.transaction_hash
FROM unnest(%(clients)s::text[], %(indexes)s::numeric[]) AS k(client_address, feedback_index)
CROSS JOIN LATERAL (
    SELECT fr.responder, fr.response_uri, fr.response_hash, fr.block_number, fr.log_index,
           fr.block_time, fr.transaction_hash
    FROM feedback_responses AS fr
    WHERE fr.chain_id = %(chain_id)s AND fr.agent_id = %(agent_id)s::numeric
      AND fr.client_address = k.client_address AND fr.feedback_index = k.feedback_index
    ORDER BY fr.block_number, fr.log_index
    LIMIT %(per_feedback)s
) AS r
ORDER BY k.client_address, k.feedback_index, r.block_number, r.log_index

-- validations_page --
-- A page of the agent's validation requests, newest first, of the given validators unless
-- NULL, whose latest response has the tag unless NULL or empty; after the cursor's
-- (block_number, log_index).
SELECT chain_id, request_hash, validator_address, agent_id, request_uri, block_number,
       log_index, requested_at, transaction_hash, response, response_tag, response_uri,
       response_hash, responded_block, responded_at, response_count
FROM validation_requests
WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
  AND (%(validators)s::text[] IS NULL OR validator_address = ANY (%(validators)s::text[]))
  AND (coalesce(%(tag)s, '') = '' OR response_tag = %(tag)s)
  AND (%(after_block)s::bigint IS NULL
       OR (block_number, log_index) < (%(after_block)s::bigint, %(after_log_index)s::int))
ORDER BY block_number DESC, log_index DESC
LIMIT %(limit)s

-- validation_records --
-- What the validation getSummary reads of each of the agent's requests.
SELECT validator_address, response, response_tag
FROM validation_requests
WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
  AND (%(validators)s::text[] IS NULL OR validator_address = ANY (%(validators)s::text[]))

-- agent_history --
-- The agent's identity changes in chain order: registration, URI updates, transfers (the
-- owner) and agentWallet changes; after the cursor's (block_number, log_index).
SELECT e.event_type, e.block_number, e.log_index, e.block_time, e.transaction_hash,
       e.owner, e.token_uri, e.updated_by, e.from_address, e.to_address, e.metadata_value
FROM events AS e
WHERE e.chain_id = %(chain_id)s AND e.agent_id = %(agent_id)s::numeric
  AND e.registry = 'identity' AND e.agent_id IS NOT NULL
  AND (e.event_type IN ('Registered', 'URIUpdated', 'Transfer')
       OR (e.event_type = 'MetadataSet' AND e.metadata_key = 'agentWallet'))
  AND (%(after_block)s::bigint IS NULL
       OR (e.block_number, e.log_index) > (%(after_block)s::bigint, %(after_log_index)s::int))
ORDER BY e.block_number, e.log_index
LIMIT %(limit)s

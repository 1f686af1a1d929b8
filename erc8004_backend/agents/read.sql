-- agent_profile --
-- An agent, with the registration file read from its current URI (if the indexer has a row
-- for that URI yet: agent_registrations is keyed by a digest of the URI).
SELECT a.chain_id, a.agent_id, a.owner, a.agent_wallet, a.wallet_updated_at, a.agent_uri,
       a.uri_updated_at, a.registered_block, a.registered_at, a.first_block, a.first_at,
       a.last_block, a.last_at, r.status AS registration_status, r.document, r.services,
       r.mcp_endpoint, r.a2a_endpoint, r.error AS registration_error, r.fetched_at
FROM agents AS a
LEFT JOIN agent_registrations AS r
    ON r.chain_id = a.chain_id AND r.agent_id = a.agent_id
   AND r.uri_digest = encode(sha256(convert_to(a.agent_uri, 'UTF8')), 'hex')
WHERE a.chain_id = %(chain_id)s AND a.agent_id = %(agent_id)s::numeric

-- agent_metadata --
-- The agent's on-chain metadata but the reserved agentWallet: the latest value per key.
SELECT key, value, block_number, block_time
FROM agent_metadata
WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
ORDER BY key

-- agent_clients --
-- getClients: the agent's clients in the order of their first feedback.
SELECT client_address
FROM feedback_clients
WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
ORDER BY first_block, first_log_index

-- last_index --
-- getLastIndex: the client's last feedback index for the agent, 0 for none.
SELECT coalesce(max(last_index), 0) AS last_index
FROM feedback_clients
WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
  AND client_address = %(client)s

-- agent_feedback --
-- readAllFeedback: without clients, every client in the order of its first feedback; with
-- clients, in the order given (a client given twice is read twice, as the contracts do).
-- Within a client by feedback index. An empty or NULL tag matches any tag; revoked feedback
-- only with include_revoked. `limit` NULL: all.
WITH chosen AS (
    SELECT c.client_address, row_number() OVER (ORDER BY c.first_block, c.first_log_index)
           AS position
    FROM feedback_clients AS c
    WHERE %(clients)s::text[] IS NULL
      AND c.chain_id = %(chain_id)s AND c.agent_id = %(agent_id)s::numeric
    UNION ALL
    SELECT given.client_address, given.position
    FROM unnest(%(clients)s::text[]) WITH ORDINALITY AS given(client_address, position)
)
SELECT f.chain_id, f.agent_id, f.client_address, f.feedback_index, f.value, f.value_decimals,
       f.tag1, f.tag2, f.endpoint, f.feedback_uri, f.feedback_hash, f.abi_version,
       f.block_number, f.log_index, f.block_time, f.transaction_hash, f.revoked,
       f.revoked_block, f.revoked_at, f.response_count
FROM chosen
JOIN feedback AS f
    ON f.chain_id = %(chain_id)s AND f.agent_id = %(agent_id)s::numeric
   AND f.client_address = chosen.client_address
WHERE (%(include_revoked)s OR NOT f.revoked)
  AND (coalesce(%(tag1)s, '') = '' OR f.tag1 = %(tag1)s)
  AND (coalesce(%(tag2)s, '') = '' OR f.tag2 = %(tag2)s)
ORDER BY chosen.position, f.feedback_index
LIMIT %(limit)s

-- one_feedback --
-- readFeedback: one feedback by its key.
SELECT chain_id, agent_id, client_address, feedback_index, value, value_decimals, tag1, tag2,
       endpoint, feedback_uri, feedback_hash, abi_version, block_number, log_index,
       block_time, transaction_hash, revoked, revoked_block, revoked_at, response_count
FROM feedback
WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
  AND client_address = %(client)s AND feedback_index = %(feedback_index)s::numeric

-- feedback_responses --
-- The responses appended to one feedback, in chain order.
SELECT responder, response_uri, response_hash, block_number, log_index, block_time,
       transaction_hash
FROM feedback_responses
WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
  AND client_address = %(client)s AND feedback_index = %(feedback_index)s::numeric
ORDER BY block_number, log_index

-- response_count --
-- getResponseCount: the responses to the agent's feedback; of one client unless NULL, of
-- one feedback index unless NULL or 0, by the given responders unless NULL or empty. As the
-- contract sums each listed responder's count, a responder listed twice counts twice.
SELECT count(*) AS responses
FROM feedback_responses AS r
LEFT JOIN unnest(%(responders)s::text[]) AS listed (responder)
       ON listed.responder = r.responder
WHERE r.chain_id = %(chain_id)s AND r.agent_id = %(agent_id)s::numeric
  AND (%(client)s::text IS NULL OR r.client_address = %(client)s)
  AND (coalesce(%(feedback_index)s::numeric, 0) = 0
       OR r.feedback_index = %(feedback_index)s::numeric)
  AND (coalesce(cardinality(%(responders)s::text[]), 0) = 0 OR listed.responder IS NOT NULL)

-- agent_validations --
-- The agent's validation requests, newest first, of the given validators unless NULL.
SELECT chain_id, request_hash, validator_address, agent_id, request_uri, block_number,
       log_index, requested_at, transaction_hash, response, response_tag, response_uri,
       response_hash, responded_block, responded_at, response_count
FROM validation_requests
WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
  AND (%(validators)s::text[] IS NULL OR validator_address = ANY (%(validators)s::text[]))
ORDER BY block_number DESC, log_index DESC
LIMIT %(limit)s

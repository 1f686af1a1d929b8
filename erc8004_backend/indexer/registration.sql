-- enqueue --
-- One pending row per (chain, agent, URI), from arrays of agent ids and URIs. An existing
-- row goes back to pending with a fresh attempt budget: a URIUpdated event, even one naming
-- the same URI, asks for the file to be read again. Its last document stays until then.
-- DISTINCT: one statement may not update the same row twice (Registered and URIUpdated of
-- one agent and URI in one batch).
INSERT INTO agent_registrations (chain_id, agent_id, uri_digest, agent_uri)
SELECT %(chain_id)s, item.agent_id, encode(sha256(convert_to(item.uri, 'UTF8')), 'hex'), item.uri
FROM (
    SELECT DISTINCT agent_id, uri
    FROM unnest(%(agent_ids)s::numeric[], %(uris)s::text[]) AS given(agent_id, uri)
) AS item
ON CONFLICT (chain_id, agent_id, uri_digest) DO UPDATE
SET status = 'pending', attempts = 0, error = NULL, next_attempt_at = now()

-- claim_due --
-- Takes due pending rows for one attempt. The claim is a lease, not a held lock: the
-- attempt is counted and next_attempt_at moves past the fetch's time limit, so a worker that
-- dies mid-fetch only delays the row. updated_at (set by the row's trigger) is the claim's
-- version: results are stored only while it is unchanged, so a row re-enqueued during the
-- fetch is fetched again instead of keeping a result older than its event.
WITH due AS (
    SELECT chain_id, agent_id, uri_digest
    FROM agent_registrations
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE agent_registrations AS r
SET attempts = r.attempts + 1, next_attempt_at = now() + %(lease)s::interval
FROM due
WHERE r.chain_id = due.chain_id AND r.agent_id = due.agent_id AND r.uri_digest = due.uri_digest
RETURNING r.chain_id, r.agent_id, r.uri_digest, r.agent_uri, r.attempts, r.updated_at

-- store_fetched --
-- Stores results of claimed rows still at their claimed version. Rows the indexer is
-- queueing again at this moment (locked by its transaction) are skipped, not waited for:
-- their new pending state supersedes the result, and waiting could deadlock with it.
WITH result AS (
    SELECT *
    FROM unnest(%(chain_ids)s::bigint[], %(agent_ids)s::numeric[], %(uri_digests)s::text[],
                %(claimed_at)s::timestamptz[], %(documents)s::text[], %(services)s::text[],
                %(mcp_endpoints)s::text[], %(a2a_endpoints)s::text[])
         AS f(chain_id, agent_id, uri_digest, claimed_at, document, services, mcp_endpoint,
              a2a_endpoint)
), still_claimed AS (
    SELECT result.*
    FROM agent_registrations AS r
    JOIN result USING (chain_id, agent_id, uri_digest)
    WHERE r.updated_at = result.claimed_at AND r.status = 'pending'
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE agent_registrations AS r
SET status = 'fetched', document = f.document::jsonb, services = f.services::jsonb,
    mcp_endpoint = f.mcp_endpoint, a2a_endpoint = f.a2a_endpoint, error = NULL,
    fetched_at = now()
FROM still_claimed AS f
WHERE r.chain_id = f.chain_id AND r.agent_id = f.agent_id AND r.uri_digest = f.uri_digest

-- store_failed --
-- Like store_fetched. A final failure (nothing a retry could soon change) or the last allowed
-- attempt ends in 'failed'; otherwise the row waits retry_delay * 2^(attempts - 1), at most
-- max_retry_delay. The last fetched document, if any, stays: fetched_at says how old it is.
WITH result AS (
    SELECT *
    FROM unnest(%(chain_ids)s::bigint[], %(agent_ids)s::numeric[], %(uri_digests)s::text[],
                %(claimed_at)s::timestamptz[], %(errors)s::text[], %(final)s::boolean[])
         AS f(chain_id, agent_id, uri_digest, claimed_at, error, final)
), still_claimed AS (
    SELECT result.*
    FROM agent_registrations AS r
    JOIN result USING (chain_id, agent_id, uri_digest)
    WHERE r.updated_at = result.claimed_at AND r.status = 'pending'
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE agent_registrations AS r
SET status = CASE WHEN f.final OR r.attempts >= %(max_attempts)s
                  THEN 'failed' ELSE 'pending' END,
    error = f.error,
    next_attempt_at = now() + least(%(max_retry_delay)s::interval,
                                    %(retry_delay)s::interval
                                    * power(2, least(greatest(r.attempts - 1, 0), 30)))
FROM still_claimed AS f
WHERE r.chain_id = f.chain_id AND r.agent_id = f.agent_id AND r.uri_digest = f.uri_digest

-- current_registration --
-- The agent's URI is the one of its latest Registered / URIUpdated event still stored (a
-- reorg deletes orphaned events), with the registration row of that URI if there is one.
SELECT latest.token_uri, r.status, r.document, r.services, r.mcp_endpoint, r.a2a_endpoint,
       r.error, r.attempts, r.fetched_at
FROM (
    SELECT coalesce(token_uri, '') AS token_uri
    FROM events
    WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
      AND registry = 'identity' AND event_type IN ('Registered', 'URIUpdated')
    ORDER BY block_number DESC, log_index DESC
    LIMIT 1
) AS latest
LEFT JOIN agent_registrations AS r
    ON r.chain_id = %(chain_id)s AND r.agent_id = %(agent_id)s::numeric
   AND r.uri_digest = encode(sha256(convert_to(latest.token_uri, 'UTF8')), 'hex')

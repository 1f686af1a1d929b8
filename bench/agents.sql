-- The events of bench/agents.py, generated in the database: one chain's identity,
-- reputation and validation history, in staging tables first (UNLOGGED, dropped at the end),
-- then copied into `events` in chain order. Every draw is a hash of the row's number (no
-- random()), so a size always makes the same data. u(x) below stands for
-- (hashtext(x) & 2147483647)::float8 / 2147483648, a uniform draw in [0, 1).
--
-- Time is a fraction t in [0, 1) of the chain's history: agent a registers at
-- t = 0.8 * a / agents (the registry fills over the first four fifths), and every event that
-- names an agent comes after its registration; a revocation or a response after its
-- feedback, a validation response after its request. `stage_order` sorts all events by t
-- into one sequence, which becomes blocks of 3 events evenly spread over `weeks` weeks.

-- stage_ranks --
-- Feedback ranks (0: the agent with the most feedback) to agent ids, shuffled: busy agents
-- are not the first registered.
CREATE UNLOGGED TABLE bench_agent_rank AS
SELECT (row_number() OVER (ORDER BY md5('rank' || a), a) - 1)::int AS rank, a AS agent
FROM generate_series(0, %(agents)s - 1) AS a

-- stage_feedback --
-- The NewFeedback: each to the agent of rank floor(with_feedback * u^2.2) (the busiest agent
-- gets about 1.8%% of all feedback at 7,000 agents with feedback, the next ones 0.7%%,
-- 0.5%%, ...; the last ranks a few dozen each), from client floor(clients * u^1.5) (busy
-- clients too), at a time after the agent's registration. Its index counts the pair's
-- feedback in time order from 1, as the contract does.
CREATE UNLOGGED TABLE bench_feedback AS
WITH drawn AS (
    SELECT f,
           floor(%(with_feedback)s * power((hashtext('fa' || f) & 2147483647)::float8
                                            / 2147483648, 2.2))::int AS rank,
           floor(%(clients)s * power((hashtext('fc' || f) & 2147483647)::float8
                                      / 2147483648, 1.5))::int AS client,
           (hashtext('ft' || f) & 2147483647)::float8 / 2147483648 AS w,
           (hashtext('fx' || f) & 2147483647)::bigint AS x
    FROM generate_series(0, %(feedback)s - 1) AS f
)
SELECT d.f, r.agent, d.client, d.x,
       0.8::float8 * r.agent / %(agents)s + (1 - 0.8::float8 * r.agent / %(agents)s) * d.w AS t,
       row_number() OVER (PARTITION BY r.agent, d.client ORDER BY d.w, d.f) AS idx
FROM drawn AS d
JOIN bench_agent_rank AS r ON r.rank = d.rank

-- stage_events --
-- Every event, as (t, agent, k: the order of events at the same t, event_type, id: unique
-- per type) and the numbers the columns of `events` are made from in stage_copy.
CREATE UNLOGGED TABLE bench_staged AS
WITH agent AS (
    SELECT a, 0.8::float8 * a / %(agents)s AS r, (hashtext('ax' || a) & 2147483647)::bigint AS x,
           -- owners: about two agents each
           (hashtext('ao' || a) & 2147483647) %% (%(agents)s / 2 + 1) AS owner_no
    FROM generate_series(0, %(agents)s - 1) AS a
), request AS (
    SELECT j, r.agent, (hashtext('vx' || j) & 2147483647)::bigint AS x,
           (hashtext('vv' || j) & 2147483647) %% 300 AS validator,
           0.8::float8 * r.agent / %(agents)s + (1 - 0.8::float8 * r.agent / %(agents)s)
               * ((hashtext('vt' || j) & 2147483647)::float8 / 2147483648) AS t
    FROM generate_series(0, %(feedback)s / 50) AS j
    JOIN bench_agent_rank AS r
      ON r.rank = floor(%(agents)s * power((hashtext('va' || j) & 2147483647)::float8
                                           / 2147483648, 2))::int
)
-- Registration, in one transaction: the mint, Registered, the agentWallet (the owner, as
-- register() sets it) and for half of them a name.
SELECT r AS t, a AS agent, 0 AS k, 'Transfer' AS event_type, a::bigint AS id, NULL::int AS client,
       NULL::bigint AS idx, x, owner_no, NULL::bigint AS from_no, NULL::text AS meta_key,
       NULL::int AS validator, NULL::bigint AS request
FROM agent
UNION ALL
SELECT r, a, 1, 'Registered', a, NULL, NULL, x, owner_no, NULL, NULL, NULL, NULL FROM agent
UNION ALL
SELECT r, a, 2, 'MetadataSet', a, NULL, NULL, x, owner_no, NULL, 'agentWallet', NULL, NULL
FROM agent
UNION ALL
SELECT r, a, 3, 'MetadataSet', a + %(agents)s, NULL, NULL, x, owner_no, NULL, 'name', NULL, NULL
FROM agent WHERE x %% 2 = 0
-- Later: a new URI for 30%%, a version for 20%%, and a sale for 10%% (the transfer clears
-- the agentWallet).
UNION ALL
SELECT r + (1 - r) * ((hashtext('au' || a) & 2147483647)::float8 / 2147483648), a, 0,
       'URIUpdated', a, NULL, NULL, x, owner_no, NULL, NULL, NULL, NULL
FROM agent WHERE x %% 10 < 3
UNION ALL
SELECT r + (1 - r) * ((hashtext('av' || a) & 2147483647)::float8 / 2147483648), a, 0,
       'MetadataSet', a + 2 * %(agents)s, NULL, NULL, x, owner_no, NULL, 'version', NULL, NULL
FROM agent WHERE x %% 10 >= 8
UNION ALL
SELECT r + (1 - r) * ((hashtext('as' || a) & 2147483647)::float8 / 2147483648), a, 0,
       'Transfer', a + %(agents)s, NULL, NULL, x, owner_no + %(agents)s, owner_no, NULL, NULL,
       NULL
FROM agent WHERE x %% 10 = 5
UNION ALL
SELECT r + (1 - r) * ((hashtext('as' || a) & 2147483647)::float8 / 2147483648), a, 1,
       'MetadataSet', a + 3 * %(agents)s, NULL, NULL, x, NULL, NULL, 'agentWallet', NULL, NULL
FROM agent WHERE x %% 10 = 5
UNION ALL
SELECT t, agent, 0, 'NewFeedback', f, client, idx, x, NULL, NULL, NULL, NULL, NULL
FROM bench_feedback
-- 3%% of the feedback revoked later ...
UNION ALL
SELECT t + (1 - t) * ((hashtext('fr' || f) & 2147483647)::float8 / 2147483648), agent, 1,
       'FeedbackRevoked', f, client, idx, x, NULL, NULL, NULL, NULL, NULL
FROM bench_feedback WHERE x %% 100 < 3
-- ... 6%% answered once by the agent's owner, 1%% three times.
UNION ALL
SELECT t + (1 - t) * ((hashtext('fp' || f || ':' || n) & 2147483647)::float8 / 2147483648),
       agent, 2, 'ResponseAppended', f * 4 + n, client, idx, x, NULL, NULL, NULL, NULL, NULL
FROM bench_feedback
CROSS JOIN LATERAL generate_series(1, CASE WHEN x %% 100 >= 9 THEN 3 ELSE 1 END) AS n
WHERE x %% 100 BETWEEN 3 AND 9
-- Validation requests (one per 50 feedback, busy agents asking more) from 300 validators,
-- three quarters answered, a tenth of those twice.
UNION ALL
SELECT t, agent, 0, 'ValidationRequest', j, NULL, NULL, x, NULL, NULL, NULL, validator, j
FROM request
UNION ALL
SELECT q.t + (1 - q.t) * ((hashtext('vr' || q.j || ':' || n) & 2147483647)::float8
                           / 2147483648),
       q.agent, 1, 'ValidationResponse', q.j * 2 + n, NULL, NULL,
       (hashtext('vy' || q.j || ':' || n) & 2147483647)::bigint, NULL, NULL, NULL, q.validator,
       q.j
FROM request AS q
CROSS JOIN LATERAL generate_series(0, CASE WHEN q.x %% 40 < 3 THEN 1 ELSE 0 END) AS n
WHERE q.x %% 4 < 3

-- stage_order --
-- Chain order: the position of each event in the chain's history.
CREATE UNLOGGED TABLE bench_ordered AS
SELECT (row_number() OVER (ORDER BY t, agent, k, event_type, id) - 1)::bigint AS s, *
FROM bench_staged

-- stage_copy --
-- The events of positions [first, last] into `events`: 3 to a block, a block every `step`
-- seconds from `start`; addresses and hashes made from the numbers (40 and 64 hex digits).
INSERT INTO events (chain_id, registry, event_type, contract_address, block_number, block_hash,
                    block_time, transaction_hash, transaction_index, log_index, agent_id, owner,
                    token_uri, metadata_key, metadata_value, from_address, to_address, updated_by,
                    client_address, feedback_index, value, value_decimals, score, tag1, tag2,
                    endpoint, file_uri, file_hash, responder, validator_address, request_hash,
                    request_uri, response, response_uri, response_hash, tag)
WITH positioned AS (
    SELECT o.*, o.s / 3 AS block, (o.s %% 3)::int AS log_index,
           CASE WHEN o.event_type IN ('NewFeedback', 'FeedbackRevoked', 'ResponseAppended')
                THEN 'reputation' WHEN o.event_type LIKE 'Validation%%' THEN 'validation'
                ELSE 'identity' END AS registry,
           -- The decimals feedback comes in: mostly 0-2, some 18 (the reference contracts').
           (ARRAY[0, 0, 0, 1, 2, 2, 18])[o.x %% 7 + 1] AS decimals,
           -- A score of 0.00-100.00, in hundredths; 2%% of them negative.
           (o.x / 7 %% 10001) * CASE WHEN o.x %% 50 = 0 THEN -1 ELSE 1 END AS hundredths,
           '0x' || md5('owner' || o.owner_no) || left(md5('owner2' || o.owner_no), 8) AS owner_addr
    FROM bench_ordered AS o
    WHERE o.s BETWEEN %(first)s AND %(last)s
), valued AS (
    SELECT p.*,
           CASE WHEN p.decimals = 0 THEN p.hundredths / 100
                WHEN p.decimals = 1 THEN p.hundredths / 10
                WHEN p.decimals = 2 THEN p.hundredths
                ELSE p.hundredths * 10::numeric ^ 16 END AS feedback_value,
           '0x' || md5('client' || p.client) || left(md5('client2' || p.client), 8) AS client_addr,
           '0x' || md5('validator' || p.validator) || left(md5('validator2' || p.validator), 8)
               AS validator_addr,
           -- the agent's first owner answers its feedback
           '0x' || md5('owner' || ((hashtext('ao' || p.agent) & 2147483647)
                                   %% (%(agents)s / 2 + 1)))
               || left(md5('owner2' || ((hashtext('ao' || p.agent) & 2147483647)
                                        %% (%(agents)s / 2 + 1))), 8) AS agent_owner
    FROM positioned AS p
)
SELECT %(chain_id)s, v.registry, v.event_type,
       CASE v.registry WHEN 'identity' THEN '0x8004a169fb4a3325136eb29fa0ceb6d2e539a432'
                       WHEN 'reputation' THEN '0x8004baa17c55a88189ae136b182e5fda19de9b63'
                       ELSE '0x8004cc8439f36fd5f9f049d9ff86523df6daab58' END,
       %(first_block)s + v.block,
       '0x' || md5('block' || v.block) || md5('block2' || v.block),
       %(start)s::timestamptz + v.block * make_interval(secs => %(step)s),
       '0x' || md5('tx' || v.s) || md5('tx2' || v.s),
       v.log_index, v.log_index,
       v.agent,
       CASE WHEN v.event_type = 'Registered' THEN v.owner_addr END,
       CASE WHEN v.event_type IN ('Registered', 'URIUpdated')
            THEN 'ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtq' || v.agent
                 || CASE WHEN v.event_type = 'URIUpdated' THEN '/v2' ELSE '' END
                 || '/agent.json' END,
       v.meta_key,
       CASE WHEN v.meta_key = 'agentWallet' AND v.owner_no IS NOT NULL
            THEN decode(substr(v.owner_addr, 3), 'hex')
            WHEN v.meta_key = 'agentWallet' THEN '\x'::bytea  -- cleared by the sale
            WHEN v.meta_key = 'name' THEN convert_to('agent-' || v.agent, 'UTF8')
            WHEN v.meta_key = 'version' THEN convert_to('1.' || v.x %% 10, 'UTF8') END,
       CASE WHEN v.event_type = 'Transfer'
            THEN CASE WHEN v.from_no IS NULL THEN '0x0000000000000000000000000000000000000000'
                      ELSE '0x' || md5('owner' || v.from_no)
                           || left(md5('owner2' || v.from_no), 8) END END,
       CASE WHEN v.event_type = 'Transfer' THEN v.owner_addr END,
       CASE WHEN v.event_type = 'URIUpdated' THEN v.owner_addr END,
       CASE WHEN v.registry = 'reputation' THEN v.client_addr END,
       v.idx,
       CASE WHEN v.event_type = 'NewFeedback' THEN v.feedback_value END,
       CASE WHEN v.event_type = 'NewFeedback' THEN v.decimals END,
       CASE WHEN v.event_type = 'NewFeedback' THEN v.feedback_value / 10::numeric ^ v.decimals
            END,
       CASE WHEN v.event_type = 'NewFeedback'
            THEN (ARRAY['starred', 'reachable', 'uptime', 'successRate', 'responseTime',
                        'quality'])[v.x %% 6 + 1] END,
       CASE WHEN v.event_type = 'NewFeedback'
            THEN (ARRAY['', '', 'day', 'week', 'month'])[v.x / 6 %% 5 + 1] END,
       CASE WHEN v.event_type = 'NewFeedback' THEN 'https://agent' || v.agent || '.example.com/mcp'
            END,
       CASE WHEN v.event_type = 'NewFeedback' THEN 'ipfs://bafkrei' || md5('f' || v.id) END,
       CASE WHEN v.event_type = 'NewFeedback'
            THEN '0x' || md5('fh' || v.id) || md5('fh2' || v.id) END,
       CASE WHEN v.event_type = 'ResponseAppended' THEN v.agent_owner END,
       CASE WHEN v.registry = 'validation' THEN v.validator_addr END,
       CASE WHEN v.registry = 'validation'
            THEN '0x' || md5('request' || v.request) || md5('request2' || v.request) END,
       CASE WHEN v.event_type = 'ValidationRequest'
            THEN 'ipfs://bafkreirequest' || md5('r' || v.request) END,
       CASE WHEN v.event_type = 'ValidationResponse' THEN v.x %% 101 END,
       CASE WHEN v.event_type IN ('ResponseAppended', 'ValidationResponse')
            THEN 'ipfs://bafkreiresponse' || md5(v.event_type || v.id) END,
       CASE WHEN v.event_type IN ('ResponseAppended', 'ValidationResponse')
            THEN '0x' || md5('rh' || v.event_type || v.id) || md5('rh2' || v.id) END,
       CASE WHEN v.event_type = 'ValidationResponse'
            THEN (ARRAY['hard-finality', 'soft-finality', ''])[v.x %% 3 + 1] END
FROM valued AS v

-- drop_staging --
DROP TABLE bench_ordered, bench_staged, bench_feedback, bench_agent_rank

-- registrations --
-- A registration file read from most agents' current URI, as the indexer's fetcher leaves
-- it: 90%% fetched (an MCP endpoint in 60%% of them, A2A in 30%%), 5%% failed, 5%% pending.
INSERT INTO agent_registrations (chain_id, agent_id, uri_digest, agent_uri, status, document,
                                 services, mcp_endpoint, a2a_endpoint, error, attempts,
                                 fetched_at)
SELECT a.chain_id, a.agent_id, encode(sha256(convert_to(a.agent_uri, 'UTF8')), 'hex'),
       a.agent_uri,
       CASE WHEN h < 90 THEN 'fetched' WHEN h < 95 THEN 'failed' ELSE 'pending' END,
       CASE WHEN h < 90 THEN jsonb_build_object(
           'type', 'https://eips.ethereum.org/EIPS/eip-8004#registration-v1',
           'name', kind || ' agent ' || a.agent_id,
           'description', 'Answers ' || kind || ' questions for other agents; agent '
                          || a.agent_id || ' of the benchmark.',
           'image', 'https://agent' || a.agent_id || '.example.com/logo.png',
           'services', services,
           'active', h %% 10 < 8,
           'x402Support', h %% 3 = 0,
           'supportedTrust', jsonb_build_array('reputation')) END,
       CASE WHEN h < 90 THEN services ELSE '[]'::jsonb END,
       CASE WHEN h < 90 AND h %% 5 < 3 THEN 'https://agent' || a.agent_id || '.example.com/mcp'
            END,
       CASE WHEN h < 90 AND h %% 10 < 3 THEN 'https://agent' || a.agent_id || '.example.com/a2a'
            END,
       CASE WHEN h >= 90 AND h < 95 THEN 'HTTP 404 from the gateway' END,
       CASE WHEN h < 95 THEN 1 ELSE 0 END,
       CASE WHEN h < 90 THEN a.registered_at END
FROM agents AS a
CROSS JOIN LATERAL (
    SELECT (hashtext('reg' || a.agent_id) & 2147483647) %% 100 AS h,
           (ARRAY['weather', 'travel', 'trading', 'research', 'support'])[
               (hashtext('kind' || a.agent_id) & 2147483647) %% 5 + 1] AS kind
) AS draw
CROSS JOIN LATERAL (
    SELECT jsonb_agg(service) AS services
    FROM (
        SELECT jsonb_build_object('name', 'MCP', 'endpoint', 'https://agent' || a.agent_id
                                  || '.example.com/mcp', 'version', '2025-06-18') AS service
        WHERE h %% 5 < 3
        UNION ALL
        SELECT jsonb_build_object('name', 'A2A', 'endpoint', 'https://agent' || a.agent_id
                                  || '.example.com/a2a', 'version', '0.3.0')
        WHERE h %% 10 < 3
        UNION ALL
        SELECT jsonb_build_object('name', 'web', 'endpoint', 'https://agent' || a.agent_id
                                  || '.example.com/')
    ) AS listed
) AS listing
WHERE a.chain_id = %(chain_id)s AND a.agent_uri IS NOT NULL

-- model_counts --
SELECT (SELECT count(*) FROM events) AS events,
       (SELECT count(*) FROM agents) AS agents,
       (SELECT count(*) FROM feedback) AS feedback,
       (SELECT count(*) FROM feedback WHERE revoked) AS revoked,
       (SELECT count(*) FROM feedback_clients) AS agent_clients,
       (SELECT count(*) FROM client_feedback_stats) AS clients,
       (SELECT count(*) FROM feedback_responses) AS responses,
       (SELECT count(*) FROM validation_requests) AS validation_requests,
       (SELECT count(*) FROM agent_registrations) AS registrations,
       (SELECT count(*) FROM agent_feedback_stats WHERE feedback_count > 0) AS agents_with_feedback,
       (SELECT max(feedback_count) FROM agent_feedback_stats) AS most_feedback

-- busiest_agents --
SELECT agent_id, feedback_count + revoked_count AS feedback, client_count
FROM agent_feedback_stats
WHERE chain_id = %(chain_id)s
ORDER BY feedback_count + revoked_count DESC, agent_id
LIMIT %(limit)s

-- all_agents --
SELECT a.agent_id, a.first_at, s.feedback_count + s.revoked_count AS feedback
FROM agents AS a
JOIN agent_feedback_stats AS s USING (chain_id, agent_id)
WHERE a.chain_id = %(chain_id)s
ORDER BY a.agent_id

-- some_clients --
-- Up to `limit` of the agent's clients, drawn the same way for a given seed.
SELECT client_address
FROM feedback_clients
WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
ORDER BY md5(client_address || %(seed)s)
LIMIT %(limit)s

-- any_clients --
-- Clients of the chain, to fill a getSummary's list with some that never rated the agent.
SELECT client_address
FROM client_feedback_stats
WHERE chain_id = %(chain_id)s
ORDER BY md5(client_address || %(seed)s)
LIMIT %(limit)s

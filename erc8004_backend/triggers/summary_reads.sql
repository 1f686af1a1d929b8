-- feedback_through --
-- The feedback of the agents (of the given clients unless NULL) given at or before the
-- position, from the read model, each with the position of the revocation that revoked it:
-- the model keeps that revocation's block and time, and its log index is the first
-- FeedbackRevoked of the key in that block after the feedback (read through events_agent_idx,
-- the block time naming the partition). A revocation after the position is returned too: the
-- caller compares positions.
SELECT f.agent_id, f.client_address, f.feedback_index, f.value, f.value_decimals,
       coalesce(f.tag1, '') AS tag1, coalesce(f.tag2, '') AS tag2, f.block_number,
       f.log_index, f.block_time, r.block_number AS revoked_block,
       r.log_index AS revoked_log_index
FROM feedback AS f
LEFT JOIN LATERAL (
    SELECT e.block_number, e.log_index
    FROM events AS e
    WHERE e.chain_id = f.chain_id AND e.agent_id = f.agent_id
      AND e.block_time = f.revoked_at AND e.block_number = f.revoked_block
      AND e.event_type = 'FeedbackRevoked' AND e.client_address = f.client_address
      AND e.feedback_index = f.feedback_index
      AND (e.block_number, e.log_index) > (f.block_number, f.log_index)
    ORDER BY e.log_index
    LIMIT 1
) AS r ON f.revoked
WHERE f.chain_id = %(chain_id)s AND f.agent_id = ANY (%(agent_ids)s::numeric[])
  AND (%(clients)s::text[] IS NULL OR f.client_address = ANY (%(clients)s::text[]))
  AND (f.block_number, f.log_index) <= (%(block_number)s::bigint, %(log_index)s::int)

-- responses_through --
-- The ValidationResponses to the agents' requests (each after its request, as the read model
-- counts them) given at or before the position, with the request's validator.
SELECT v.agent_id, v.request_hash, v.validator_address, r.block_number, r.log_index,
       r.response, coalesce(r.tag, '') AS tag
FROM validation_requests AS v
JOIN events AS r
  ON r.chain_id = v.chain_id AND r.agent_id = v.agent_id
 AND r.block_time >= v.requested_at
 AND r.event_type = 'ValidationResponse' AND r.request_hash = v.request_hash
 AND (r.block_number, r.log_index) > (v.block_number, v.log_index)
WHERE v.chain_id = %(chain_id)s AND v.agent_id = ANY (%(agent_ids)s::numeric[])
  AND r.response IS NOT NULL
  AND (r.block_number, r.log_index) <= (%(block_number)s::bigint, %(log_index)s::int)

-- client_histories --
-- The chain-wide history of the clients just before the position and through it: the
-- feedback each gave (revoked included) and the distinct agents it gave feedback to, as a
-- lens's min_feedback and min_agents read them. Each client's agents come from
-- feedback_clients by client (migration 22), each pair's feedback from feedback's key.
SELECT c.client_address,
       count(*) FILTER (WHERE (f.block_number, f.log_index)
                              < (%(block_number)s::bigint, %(log_index)s::int))
           AS feedback_before,
       count(*) AS feedback_through,
       count(DISTINCT f.agent_id) FILTER (WHERE (f.block_number, f.log_index)
                                                < (%(block_number)s::bigint, %(log_index)s::int))
           AS agents_before,
       count(DISTINCT f.agent_id) AS agents_through
FROM feedback_clients AS c
JOIN feedback AS f
  ON f.chain_id = c.chain_id AND f.agent_id = c.agent_id
 AND f.client_address = c.client_address
WHERE c.chain_id = %(chain_id)s AND c.client_address = ANY (%(clients)s::text[])
  AND (c.first_block, c.first_log_index) <= (%(block_number)s::bigint, %(log_index)s::int)
  AND (f.block_number, f.log_index) <= (%(block_number)s::bigint, %(log_index)s::int)
GROUP BY c.client_address

-- chains_with_events --
-- The chains that have events, without reading them all: one index probe per chain.
WITH RECURSIVE chains AS (
    SELECT min(chain_id) AS chain_id FROM events
    UNION ALL
    SELECT (SELECT min(chain_id) FROM events WHERE chain_id > chains.chain_id)
    FROM chains
    WHERE chains.chain_id IS NOT NULL
)
SELECT chain_id FROM chains WHERE chain_id IS NOT NULL
UNION
SELECT DISTINCT chain_id FROM agents
ORDER BY chain_id

-- lock_checkpoint --
-- The row every indexer batch and reorg rollback of the chain locks first: they wait for
-- the rebuild, and it for the batch in progress. No row: no indexer has run on the chain.
SELECT block_number
FROM checkpoints
WHERE chain_id = %(chain_id)s
FOR UPDATE

-- events_per_block --
SELECT block_number, count(*) AS events
FROM events
WHERE chain_id = %(chain_id)s
GROUP BY block_number
ORDER BY block_number

-- clear --
SELECT read_model_clear(%(chain_id)s)

-- apply --
-- Without the attempt at plain feedback inserts (migration 42): it is a subtransaction, and a
-- rebuild makes all its calls in one transaction.
SELECT read_model_apply(%(chain_id)s, %(from_block)s, %(to_block)s,
                        p_plain_feedback => false)

-- sizes --
SELECT (SELECT count(*) FROM agents WHERE chain_id = %(chain_id)s) AS agents,
       (SELECT count(*) FROM feedback WHERE chain_id = %(chain_id)s) AS feedback,
       (SELECT count(*) FROM feedback WHERE chain_id = %(chain_id)s AND revoked) AS revoked,
       (SELECT count(*) FROM feedback_responses WHERE chain_id = %(chain_id)s) AS responses,
       (SELECT count(*) FROM validation_requests WHERE chain_id = %(chain_id)s)
           AS validation_requests

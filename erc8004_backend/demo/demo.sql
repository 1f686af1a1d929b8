-- new_events --
-- Events indexed since the last look, oldest first, for the live feed.
SELECT id, event_type, agent_id, score, response, tag1, block_number
FROM events
WHERE chain_id = %(chain_id)s AND id > %(after)s
ORDER BY id
LIMIT 200

-- trigger_counts --
-- Per trigger: the events that fired it (a firing queues one job per action), its actions
-- delivered and given up on, and the channels it sends to.
SELECT t.id, t.name,
       (SELECT string_agg(a.action_type, ' + ' ORDER BY a.priority, a.position)
        FROM trigger_actions AS a WHERE a.trigger_id = t.id) AS channels,
       count(DISTINCT j.event_id) AS fired,
       count(j.id) FILTER (WHERE j.status = 'succeeded') AS delivered,
       count(j.id) FILTER (WHERE j.status = 'dead') AS failed
FROM triggers AS t
LEFT JOIN action_jobs AS j ON j.trigger_id = t.id
WHERE t.user_id = %(user_id)s
GROUP BY t.id
ORDER BY t.created_at, t.name

-- values_before --
-- For each (agent, position, attribute): the agent's value of the attribute just before the
-- position, from its latest earlier identity event that sets it (agent_uri: Registered or
-- URIUpdated; agent_wallet: MetadataSet of agentWallet), through events_agent_identity_idx.
-- `found` is false when no earlier event sets it.
SELECT w.agent_id, w.block_number, w.log_index, w.attribute, p.event_type IS NOT NULL AS found,
       p.token_uri, p.metadata_value
FROM unnest(%(agent_ids)s::numeric[], %(block_numbers)s::bigint[], %(log_indexes)s::int[],
            %(attributes)s::text[]) AS w(agent_id, block_number, log_index, attribute)
LEFT JOIN LATERAL (
    SELECT e.event_type, e.token_uri, e.metadata_value
    FROM events AS e
    WHERE e.chain_id = %(chain_id)s AND e.agent_id = w.agent_id
      AND e.registry = 'identity' AND e.agent_id IS NOT NULL
      AND (e.block_number, e.log_index) < (w.block_number, w.log_index)
      AND CASE w.attribute
              WHEN 'agent_uri' THEN e.event_type IN ('Registered', 'URIUpdated')
              ELSE e.event_type = 'MetadataSet' AND e.metadata_key = 'agentWallet'
          END
    ORDER BY e.block_number DESC, e.log_index DESC
    LIMIT 1
) AS p ON true

-- registration_files --
-- The stored registration file of each (agent, URI), when the fetcher has one (a row still
-- pending its first fetch, or only failed, has no document).
SELECT w.agent_id, w.uri, r.document
FROM unnest(%(agent_ids)s::numeric[], %(uris)s::text[]) AS w(agent_id, uri)
JOIN agent_registrations AS r
  ON r.chain_id = %(chain_id)s AND r.agent_id = w.agent_id
 AND r.uri_digest = encode(sha256(convert_to(w.uri, 'UTF8')), 'hex')
WHERE r.document IS NOT NULL

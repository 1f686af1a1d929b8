-- Development and test data. Load it into a migrated database with either
--   erc8004 db seed
--   psql -U postgres -d erc8004_backend -f database/seeds/test_data.sql
-- Loading it twice changes nothing: every row has a fixed key and ON CONFLICT DO NOTHING.
--
-- Users alice, bob and charlie all have the password "password123" (bcrypt, cost 12).
-- MCP tokens are encrypted with the documented development key (ERC8004_TOKEN_KEYS
-- unset): agent 42 on chain 84532 has the token "mcp-token-agent-42-dev", agent 7
-- "mcp-token-agent-7-dev", agent 3 on chain 80002 "mcp-token-agent-3-dev".
-- The triggers are examples 1, 4 and 5 of shared/trigger-examples.md.

BEGIN;

-- Users --------------------------------------------------------------------------------
INSERT INTO users (id, username, email, password_hash, role) VALUES
    ('a11ce000-0000-4000-8000-000000000001', 'alice', 'alice@example.com',
     '$2b$12$Scl9AaqL76as3axPI8Hk4ufjRwBOPKkBAFb2x2MAKquSlL/bBoxOe', 'user'),
    ('b0b00000-0000-4000-8000-000000000002', 'bob', 'bob@example.com',
     '$2b$12$kWrHDIgXXbfUA5fnNJuJ0upf0TvZ87u4AEltUxJ8cgBA.9zOT..ma', 'user'),
    ('c4a411e0-0000-4000-8000-000000000003', 'charlie', 'charlie@example.com',
     '$2b$12$ggDhyBg2Wlx950qYwaIsUOpPJswc2nuziCPWB6c.BrSSYf0p9ZqgC', 'operator')
ON CONFLICT DO NOTHING;

-- Triggers, their conditions and actions -------------------------------------------------
-- They fire for events from the start of the sample day on (`fires_from`; a new trigger
-- fires from its creation), so the sample events below are theirs.
INSERT INTO triggers (id, user_id, name, description, chain_id, registry, is_stateful, fires_from) VALUES
    ('7a1e0000-0000-4000-8000-000000000001', 'a11ce000-0000-4000-8000-000000000001',
     'Low score alert for agent 42', 'Telegram message on feedback below 60',
     84532, 'reputation', false, '2025-01-23 00:00:00+00'),
    ('7a1e0000-0000-4000-8000-000000000002', 'b0b00000-0000-4000-8000-000000000002',
     'Trusted validator failure', 'A trusted validator answered below 80',
     80002, 'validation', false, '2025-01-23 00:00:00+00'),
    ('7a1e0000-0000-4000-8000-000000000003', 'c4a411e0-0000-4000-8000-000000000003',
     'EMA score drop', 'Moving average of agent 42''s feedback below 70',
     84532, 'reputation', true, '2025-01-23 00:00:00+00')
ON CONFLICT DO NOTHING;

INSERT INTO trigger_conditions (id, trigger_id, position, condition_type, field, operator, value, config) VALUES
    ('c0d10000-0000-4000-8000-000000000001', '7a1e0000-0000-4000-8000-000000000001', 0,
     'agent_id_equals', 'agent_id', '=', '42', '{}'),
    ('c0d10000-0000-4000-8000-000000000002', '7a1e0000-0000-4000-8000-000000000001', 1,
     'score_threshold', 'score', '<', '60', '{}'),
    ('c0d10000-0000-4000-8000-000000000003', '7a1e0000-0000-4000-8000-000000000002', 0,
     'validator_whitelist', 'validator_address', 'IN',
     '["0x1111111111111111111111111111111111111111", "0x2222222222222222222222222222222222222222"]', '{}'),
    ('c0d10000-0000-4000-8000-000000000004', '7a1e0000-0000-4000-8000-000000000002', 1,
     'response_threshold', 'response', '<', '80', '{}'),
    ('c0d10000-0000-4000-8000-000000000005', '7a1e0000-0000-4000-8000-000000000003', 0,
     'agent_id_equals', 'agent_id', '=', '42', '{}'),
    ('c0d10000-0000-4000-8000-000000000006', '7a1e0000-0000-4000-8000-000000000003', 1,
     'ema_threshold', 'score', '<', '70', '{"window_size": 10}')
ON CONFLICT DO NOTHING;

INSERT INTO trigger_actions (id, trigger_id, position, action_type, priority, config) VALUES
    ('ac710000-0000-4000-8000-000000000001', '7a1e0000-0000-4000-8000-000000000001', 0, 'telegram', 1,
     '{"chat_id": "123456789", "parse_mode": "MarkdownV2", "message_template": "Agent #{{agent_id}} received a low score: {{score}}\nFrom: {{client_address}}\nTags: {{tag1}}, {{tag2}}\nBlock: {{block_number}}"}'),
    ('ac710000-0000-4000-8000-000000000002', '7a1e0000-0000-4000-8000-000000000002', 0, 'telegram', 1,
     '{"chat_id": "987654321", "message_template": "Validation failed for agent {{agent_id}}: {{response}}/100 from {{validator_address}} ({{tag}})"}'),
    ('ac710000-0000-4000-8000-000000000003', '7a1e0000-0000-4000-8000-000000000002', 1, 'rest', 2,
     '{"method": "POST", "url": "https://api.example.com/validation-alerts", "headers": {"Authorization": "Bearer EXAMPLE"}, "timeout_ms": 10000, "body_template": {"agent_id": "{{agent_id}}", "response": "{{response}}", "validator": "{{validator_address}}"}}'),
    ('ac710000-0000-4000-8000-000000000004', '7a1e0000-0000-4000-8000-000000000003', 0, 'telegram', 1,
     '{"chat_id": "123456789", "message_template": "Agent #{{agent_id}} average fell to {{ema_score}} (latest {{score}})"}')
ON CONFLICT DO NOTHING;

-- The EMA trigger's state for agent 42 after the sample feedback below, as the engine keeps it:
-- per stateful condition, under its 1-based place among the trigger's conditions.
INSERT INTO trigger_state (trigger_id, scope, state, last_block_number, last_log_index) VALUES
    ('7a1e0000-0000-4000-8000-000000000003', 'agent:42',
     '{"2": {"ema": 81.81818181818181, "n": 2}}',
     21000012, 3)
ON CONFLICT DO NOTHING;

-- Events --------------------------------------------------------------------------------
-- Weekly partitions for the sample week (a no-op under TimescaleDB).
DO $$ BEGIN PERFORM ensure_event_partitions('2025-01-20 00:00:00+00', '2025-01-26 23:59:59+00'); END $$;

-- Identity (Base Sepolia): registering agent 42 emits Transfer (mint), Registered and
-- MetadataSet(agentWallet); later the owner updates its URI.
INSERT INTO events (chain_id, registry, event_type, contract_address, block_number, block_hash,
                    block_time, transaction_hash, transaction_index, log_index, agent_id,
                    owner, token_uri, metadata_key, metadata_value, from_address, to_address, updated_by)
VALUES
    (84532, 'identity', 'Transfer', '0x8004a818bfb912233c491871b3d84c89a494bd9e', 21000001,
     '0x1b0c5a2e7d1f0c9e8b7a6f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b01', '2025-01-23 10:00:00+00',
     '0x7f3e2d1c0b0a99887766554433221100ffeeddccbbaa99887766554433221101', 4, 0, 42,
     NULL, NULL, NULL, NULL, '0x0000000000000000000000000000000000000000',
     '0xa11ce0000000000000000000000000000000a11c', NULL),
    (84532, 'identity', 'Registered', '0x8004a818bfb912233c491871b3d84c89a494bd9e', 21000001,
     '0x1b0c5a2e7d1f0c9e8b7a6f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b01', '2025-01-23 10:00:00+00',
     '0x7f3e2d1c0b0a99887766554433221100ffeeddccbbaa99887766554433221101', 4, 2, 42,
     '0xa11ce0000000000000000000000000000000a11c', 'https://agents.example.com/42/registration.json',
     NULL, NULL, NULL, NULL, NULL),
    (84532, 'identity', 'MetadataSet', '0x8004a818bfb912233c491871b3d84c89a494bd9e', 21000001,
     '0x1b0c5a2e7d1f0c9e8b7a6f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b01', '2025-01-23 10:00:00+00',
     '0x7f3e2d1c0b0a99887766554433221100ffeeddccbbaa99887766554433221101', 4, 3, 42,
     NULL, NULL, 'agentWallet', '\xa11ce0000000000000000000000000000000a11c', NULL, NULL, NULL),
    (84532, 'identity', 'URIUpdated', '0x8004a818bfb912233c491871b3d84c89a494bd9e', 21000005,
     '0x2c1d6b3f8e2a1d0f9c8b7a605f4e3d2c1b0a9f8e7d6c5b4a3928170605f4e302', '2025-01-23 10:00:20+00',
     '0x8a4f3e2d1c0b0a998877665544332211ffeeddccbbaa9988776655443322110a', 0, 1, 42,
     NULL, 'ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi', NULL, NULL,
     NULL, NULL, '0xa11ce0000000000000000000000000000000a11c')
ON CONFLICT DO NOTHING;

-- Reputation (Base Sepolia): a low score, a good score, a revocation and a response.
INSERT INTO events (chain_id, registry, event_type, contract_address, block_number, block_hash,
                    block_time, transaction_hash, transaction_index, log_index, agent_id,
                    client_address, feedback_index, value, value_decimals, score, tag1, tag2,
                    endpoint, file_uri, file_hash, responder, response_uri, response_hash)
VALUES
    (84532, 'reputation', 'NewFeedback', '0x8004b663056a597dffe9eccc1965a193b7388713', 21000010,
     '0x3d2e7c4a9f3b2e1a0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e310', '2025-01-23 10:01:00+00',
     '0x9b5a4f3e2d1c0b0a99887766554433221100ffeeddccbbaa9988776655443310', 2, 0, 42,
     '0xc11e470000000000000000000000000000000001', 1, 45, 0, 45, 'quality', 'latency',
     'https://agents.example.com/42/mcp', 'ipfs://bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku',
     '0x5f16f4c7f149ac4f9510d9cf8cf384038ad348b3bcdc01915f95de12df9d1b02', NULL, NULL, NULL),
    (84532, 'reputation', 'NewFeedback', '0x8004b663056a597dffe9eccc1965a193b7388713', 21000012,
     '0x4e3f8d5b0a4c3f2b1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a493827160f5e12', '2025-01-23 10:01:24+00',
     '0xac6b5a4f3e2d1c0b0a99887766554433221100ffeeddccbbaa99887766554412', 0, 3, 42,
     '0xc11e470000000000000000000000000000000002', 1, 8750, 2, 87.50, 'refund', '',
     '', '', '0x0000000000000000000000000000000000000000000000000000000000000000', NULL, NULL, NULL),
    (84532, 'reputation', 'FeedbackRevoked', '0x8004b663056a597dffe9eccc1965a193b7388713', 21000020,
     '0x5f4a9e6c1b5d4a3c2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a49382716f520', '2025-01-23 10:03:00+00',
     '0xbd7c6b5a4f3e2d1c0b0a99887766554433221100ffeeddccbbaa998877665520', 1, 0, 42,
     '0xc11e470000000000000000000000000000000001', 1, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL),
    (84532, 'reputation', 'ResponseAppended', '0x8004b663056a597dffe9eccc1965a193b7388713', 21000021,
     '0x6a5b0f7d2c6e5b4d3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4938271621', '2025-01-23 10:03:12+00',
     '0xce8d7c6b5a4f3e2d1c0b0a99887766554433221100ffeeddccbbaa9988776621', 0, 0, 42,
     '0xc11e470000000000000000000000000000000002', 1, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, '0xa11ce0000000000000000000000000000000a11c',
     'https://agents.example.com/42/responses/1.json',
     '0x9c1185a5c5e9fc54612808977ee8f548b2258d31b2c8d1f1f6b5a6c3b8e0f4d1')
ON CONFLICT DO NOTHING;

-- Validation (Polygon Amoy): agent 3 asks a validator, which answers 50 of 100.
INSERT INTO events (chain_id, registry, event_type, contract_address, block_number, block_hash,
                    block_time, transaction_hash, transaction_index, log_index, agent_id,
                    validator_address, request_hash, request_uri, response, response_uri,
                    response_hash, tag)
VALUES
    (80002, 'validation', 'ValidationRequest', '0x8004cb1bf31daf7788923b405b754f57aceb4272', 17500100,
     '0x7b6c1a8e3d7f6c5e4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a49382700', '2025-01-23 11:00:00+00',
     '0xdf9e8d7c6b5a4f3e2d1c0b0a99887766554433221100ffeeddccbbaa99887700', 0, 0, 3,
     '0x1111111111111111111111111111111111111111',
     '0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
     'https://agents.example.com/3/validation-request.json', NULL, NULL, NULL, NULL),
    (80002, 'validation', 'ValidationResponse', '0x8004cb1bf31daf7788923b405b754f57aceb4272', 17500160,
     '0x8c7d2b9f4e8a7d6f5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a493860', '2025-01-23 11:02:00+00',
     '0xea0f9e8d7c6b5a4f3e2d1c0b0a99887766554433221100ffeeddccbbaa998860', 1, 2, 3,
     '0x1111111111111111111111111111111111111111',
     '0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
     NULL, 50, 'https://validator.example.com/reports/3.json',
     '0x2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824', 'security')
ON CONFLICT DO NOTHING;

-- Indexer and trigger engine progress ------------------------------------------------------
INSERT INTO checkpoints (chain_id, block_number, block_hash, head_block_number) VALUES
    (84532, 21000021, '0x6a5b0f7d2c6e5b4d3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4938271621', 21000023),
    (80002, 17500160, '0x8c7d2b9f4e8a7d6f5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a493860', 17500162)
ON CONFLICT DO NOTHING;

INSERT INTO indexed_blocks (chain_id, block_number, block_hash, parent_hash, block_time) VALUES
    (84532, 21000021, '0x6a5b0f7d2c6e5b4d3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4938271621',
     '0x6a5b0f7d2c6e5b4d3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4938271620', '2025-01-23 10:03:12+00'),
    (80002, 17500160, '0x8c7d2b9f4e8a7d6f5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a493860',
     '0x8c7d2b9f4e8a7d6f5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a493859', '2025-01-23 11:02:00+00')
ON CONFLICT DO NOTHING;

-- Every sample event has been evaluated by the trigger engine.
INSERT INTO processing_cursors (chain_id, block_number, log_index) VALUES
    (84532, 21000021, 0),
    (80002, 17500160, 2)
ON CONFLICT DO NOTHING;

-- Action jobs and their attempts -----------------------------------------------------------
-- Alice's low-score alert was delivered on the first attempt; bob's validation alert to
-- Telegram failed twice and went to dead-letter.
INSERT INTO action_jobs (id, trigger_id, action_id, event_id, chain_id, priority, status, attempts,
                         idempotency_key, payload, last_error, finished_at)
OVERRIDING SYSTEM VALUE
SELECT 1, '7a1e0000-0000-4000-8000-000000000001'::uuid, 'ac710000-0000-4000-8000-000000000001'::uuid, e.id,
       84532, 1, 'succeeded', 1,
       'seed-7a1e0001-ac710001-' || e.id,
       jsonb_build_object('agent_id', '42', 'score', '45', 'client_address', e.client_address,
                          'tag1', e.tag1, 'tag2', e.tag2, 'block_number', e.block_number,
                          'trigger_name', 'Low score alert for agent 42'),
       NULL::text, '2025-01-23 10:01:05+00'::timestamptz
FROM events e
WHERE e.chain_id = 84532 AND e.block_number = 21000010 AND e.log_index = 0
UNION ALL
SELECT 2, '7a1e0000-0000-4000-8000-000000000002'::uuid, 'ac710000-0000-4000-8000-000000000002'::uuid, e.id,
       80002, 1, 'dead', 2,
       'seed-7a1e0002-ac710002-' || e.id,
       jsonb_build_object('agent_id', '3', 'response', '50', 'validator_address', e.validator_address,
                          'tag', e.tag, 'trigger_name', 'Trusted validator failure'),
       'Telegram answered 400: chat not found', '2025-01-23 11:02:09+00'
FROM events e
WHERE e.chain_id = 80002 AND e.block_number = 17500160 AND e.log_index = 2
ON CONFLICT DO NOTHING;

-- Rows above were given explicit ids: move the sequence past them.
DO $$ BEGIN PERFORM setval(pg_get_serial_sequence('action_jobs', 'id'), (SELECT max(id) FROM action_jobs)); END $$;

INSERT INTO action_results (id, job_id, user_id, trigger_id, action_id, event_id, chain_id, action_type,
                            status, retry_count, duration_ms, error_message, response_data, executed_at)
OVERRIDING SYSTEM VALUE
SELECT 1, 1, 'a11ce000-0000-4000-8000-000000000001'::uuid, j.trigger_id, j.action_id, j.event_id, 84532,
       'telegram', 'success', 0, 182, NULL::text,
       '{"ok": true, "result": {"message_id": 1001}}'::jsonb, '2025-01-23 10:01:05+00'::timestamptz
FROM action_jobs j WHERE j.id = 1
UNION ALL
SELECT 2, 2, 'b0b00000-0000-4000-8000-000000000002', j.trigger_id, j.action_id, j.event_id, 80002,
       'telegram', 'retrying', 0, 5012, 'timed out after 5000 ms', NULL, '2025-01-23 11:02:04+00'
FROM action_jobs j WHERE j.id = 2
UNION ALL
SELECT 3, 2, 'b0b00000-0000-4000-8000-000000000002', j.trigger_id, j.action_id, j.event_id, 80002,
       'telegram', 'failed', 1, 240, 'Telegram answered 400: chat not found',
       '{"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}',
       '2025-01-23 11:02:09+00'
FROM action_jobs j WHERE j.id = 2
ON CONFLICT DO NOTHING;

DO $$ BEGIN PERFORM setval(pg_get_serial_sequence('action_results', 'id'), (SELECT max(id) FROM action_results)); END $$;

-- MCP tokens (AES-256-GCM under the development key "dev") ---------------------------------
INSERT INTO agent_mcp_tokens (id, chain_id, agent_id, token_ciphertext, key_id, created_by) VALUES
    ('70ce0000-0000-4000-8000-000000000001', 84532, 42,
     '\xd7c1ec6e44a2c0626f7585be643a8be90031364009ae8f0df7f17a35cd8e94f605571bfe7c74968cf6208d01a1cf76e00296',
     'dev', 'a11ce000-0000-4000-8000-000000000001'),
    ('70ce0000-0000-4000-8000-000000000002', 84532, 7,
     '\xeb8061325cbc3637e48b5a7bd68e4180f177e35b324b02779c514f54bf743356c7e773c7a4c444f7a3590d5a63f9787642',
     'dev', 'c4a411e0-0000-4000-8000-000000000003'),
    ('70ce0000-0000-4000-8000-000000000003', 80002, 3,
     '\xb2b560defaa1cde205541808691714dde94fcaaa7b39492a7266eebe275e81c93fccf6d5040370390934342de298835889',
     'dev', 'c4a411e0-0000-4000-8000-000000000003')
ON CONFLICT DO NOTHING;

-- The read model of the sample chains (the indexer keeps it for the events it stores; events
-- inserted by hand reach it through a rebuild, as in `erc8004 db rebuild-read-model`).
SELECT read_model_rebuild(chain_id) FROM (VALUES (84532), (80002)) AS chains(chain_id);

COMMIT;

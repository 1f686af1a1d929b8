-- The owner event (block, log index) a token was authorized under: a Transfer after it
-- retires the token. Comparing the times the rows were stored missed a transfer whose
-- batch began before the token was set and committed after (its events carry the batch's
-- start time). Tokens set before this migration keep the comparison of times.
ALTER TABLE agent_mcp_tokens ADD COLUMN owner_block bigint, ADD COLUMN owner_log_index integer;

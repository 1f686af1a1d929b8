-- Logs at a registry's address that the indexer could not turn into an event: a topic0 that
-- no decoder knows and that is none of the registries' known non-agent events (ERC-721
-- approvals, ERC-4906 metadata updates, proxy administration: those are only counted), or a
-- known topic0 whose topics and data do not fit its layout (`decode_error` says how). A new
-- ABI version or a contract upgrade shows here, and in GET /indexer/status, instead of being
-- dropped without a trace.
--
-- Written in the transaction of the batch that covers the block, with its events and its
-- checkpoint, and deleted with them above the fork block of a reorg. The key is the log's
-- identity, as for events: writing a log again is a no-op. Only logs of the registry
-- addresses are fetched, so the table stays as small as the anomalies are rare.
CREATE TABLE unknown_logs (
    chain_id         bigint NOT NULL,
    block_number     bigint NOT NULL CHECK (block_number >= 0),
    block_hash       text NOT NULL,
    block_time       timestamptz NOT NULL,
    transaction_hash text NOT NULL,
    log_index        integer NOT NULL,
    address          text NOT NULL,
    registry         text NOT NULL CHECK (registry IN ('identity', 'reputation', 'validation')),
    topic0           text,             -- NULL: a log without topics (an anonymous event)
    decode_error     text,             -- NULL: no decoder knows the topic0
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, block_hash, log_index)
);

-- Reorg rollbacks delete by chain and block.
CREATE INDEX unknown_logs_chain_block_idx ON unknown_logs (chain_id, block_number);

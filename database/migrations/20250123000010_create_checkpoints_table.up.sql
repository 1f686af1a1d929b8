-- Indexer progress per chain: every block up to block_number is indexed. Written in the same
-- transaction as the events it covers, so a crash at any instant resumes exactly.
CREATE TABLE checkpoints (
    chain_id          bigint PRIMARY KEY,
    block_number      bigint NOT NULL CHECK (block_number >= 0),
    block_hash        text,
    -- Latest head seen, for lag reporting, and the last error, for status pages.
    head_block_number bigint,
    last_error        text,
    last_error_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER checkpoints_updated_at
    BEFORE UPDATE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- Hashes of recently indexed blocks. A new block whose parent hash differs from the stored
-- hash of its predecessor reveals a reorg; walking back to the first matching block finds
-- the fork point. The indexer keeps a window of recent blocks per chain and prunes the rest.
CREATE TABLE indexed_blocks (
    chain_id     bigint NOT NULL,
    block_number bigint NOT NULL,
    block_hash   text NOT NULL,
    parent_hash  text NOT NULL,
    block_time   timestamptz NOT NULL,
    PRIMARY KEY (chain_id, block_number)
);

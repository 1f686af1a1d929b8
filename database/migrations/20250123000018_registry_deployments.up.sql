-- The block at which each registry's code first appears on its chain, as the indexer found
-- it (a binary search on eth_getCode). A chain configured with start_block = "auto" starts
-- at the lowest of its registries', searched once and remembered here. Keyed by address: a
-- chain configured with other addresses searches for those. Blocks known in advance (the
-- public deployments') live in the code, not here.
CREATE TABLE registry_deployments (
    chain_id bigint NOT NULL,
    address text NOT NULL CHECK (address ~ '^0x[0-9a-f]{40}$'),
    block_number bigint NOT NULL CHECK (block_number >= 0),
    found_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, address)
);

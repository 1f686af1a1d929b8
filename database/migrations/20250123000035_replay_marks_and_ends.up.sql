-- Jobs a replay queued (triggers/replay.py) are marked, beside retractions: the API shows and
-- filters them, and their deliveries say so (a webhook's X-ERC8004-Replay header and
-- "replay": true, a chat message's "(replay)"), with the idempotency key a live delivery of
-- the event has, so that a receiver can tell history asked for from news and drop a repeat.
ALTER TABLE action_jobs ADD COLUMN replay boolean NOT NULL DEFAULT false;

-- A replay may end at a block or a block time (at most one of them), besides where the
-- processor was when it took the replay up: a range of history, not all of it since its start.
ALTER TABLE trigger_replays
    ADD COLUMN to_block bigint CHECK (to_block >= 0),
    ADD COLUMN to_time timestamptz,
    ADD CONSTRAINT trigger_replays_one_end CHECK (to_block IS NULL OR to_time IS NULL),
    ADD CONSTRAINT trigger_replays_blocks_in_order CHECK (from_block <= to_block),
    ADD CONSTRAINT trigger_replays_times_in_order CHECK (from_time <= to_time);

-- Jobs a replay queued (triggers/replay.py) are marked, beside retractions: the API shows and
-- filters them, and their deliveries say so (a webhook's X-ERC8004-Replay header and
-- "replay": true, a chat message's "(replay)"), with the idempotency key a live delivery of
-- the event has, so that a receiver can tell history asked for from news and drop a repeat.
ALTER TABLE action_jobs ADD COLUMN replay boolean NOT NULL DEFAULT false;

-- Reorgs deeper than the confirmation depth reach events the trigger engine already
-- processed. The indexer then rewinds the processing cursor, cancels the queued jobs of the
-- orphaned events, and restores the trigger state the orphaned batches moved, from this
-- table: before a batch near the chain's head (within the indexer's reorg window, where a
-- reorg can still reach) changes a trigger's state or last firing, the processor records
-- the value it had. Rows older than the reorg window are pruned by the processor.
CREATE TABLE trigger_state_undo (
    chain_id bigint NOT NULL,
    -- The batch: its first event (block, log index) and its last block.
    batch_block bigint NOT NULL,
    batch_log_index integer NOT NULL,
    batch_last_block bigint NOT NULL,
    trigger_id uuid NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    -- A trigger_state row (trigger_id, scope) as it was before the batch (previous_state
    -- NULL: there was none), or, with scope NULL, the trigger's last_fired_at.
    scope text,
    previous_state jsonb,
    previous_block bigint,
    previous_log_index integer,
    previous_fired_at timestamptz
);

CREATE INDEX trigger_state_undo_batch_idx
    ON trigger_state_undo (chain_id, batch_last_block);

-- A job whose event a reorg removed before it was delivered is cancelled, with a result
-- saying so.
ALTER TABLE action_jobs DROP CONSTRAINT action_jobs_status_check;
ALTER TABLE action_jobs ADD CONSTRAINT action_jobs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'dead', 'cancelled'));
ALTER TABLE action_results DROP CONSTRAINT action_results_status_check;
ALTER TABLE action_results ADD CONSTRAINT action_results_status_check
    CHECK (status IN ('success', 'failed', 'retrying', 'cancelled'));

-- A job already delivered for such an event is not taken back, but an action with
-- `notify_retractions` gets a retraction: a job of its own (retraction), for the same event
-- and action, with the same idempotency key and its payload marked "retracted".
ALTER TABLE action_jobs ADD COLUMN retraction boolean NOT NULL DEFAULT false;
ALTER TABLE action_jobs DROP CONSTRAINT action_jobs_event_id_action_id_key;
ALTER TABLE action_jobs ADD CONSTRAINT action_jobs_event_id_action_id_retraction_key
    UNIQUE (event_id, action_id, retraction);

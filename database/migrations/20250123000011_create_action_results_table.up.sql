-- The action queue and its audit trail.
--
-- action_jobs: one row per (event, trigger action), created by the trigger engine in the
-- same transaction as the state update that caused it; the unique key makes that exactly
-- once even when the engine replays a batch. Workers claim queued jobs with
-- FOR UPDATE SKIP LOCKED, hold them under a lease (locked_until) and requeue them with a
-- later run_at after a transient failure.
CREATE TABLE action_jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trigger_id      uuid NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    action_id       uuid NOT NULL REFERENCES trigger_actions (id) ON DELETE CASCADE,
    event_id        bigint NOT NULL,
    chain_id        bigint NOT NULL,
    priority        integer NOT NULL DEFAULT 1,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'succeeded', 'dead')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts    integer NOT NULL DEFAULT 8 CHECK (max_attempts > 0),
    run_at          timestamptz NOT NULL DEFAULT now(),
    locked_by       text,
    locked_until    timestamptz,
    -- Stable per (event, trigger, action): receivers deduplicate deliveries with it.
    idempotency_key text NOT NULL,
    -- What the action renders: the event's fields plus computed values (ema_score, count,
    -- trigger_name), frozen when the job was created.
    payload         jsonb NOT NULL,
    last_error      text,
    finished_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, action_id)
);

CREATE INDEX action_jobs_queue_idx ON action_jobs (priority, run_at, id) WHERE status = 'queued';
CREATE INDEX action_jobs_lease_idx ON action_jobs (locked_until) WHERE status = 'running';
CREATE INDEX action_jobs_trigger_idx ON action_jobs (trigger_id, created_at DESC);
CREATE INDEX action_jobs_dead_idx ON action_jobs (finished_at DESC) WHERE status = 'dead';

CREATE TRIGGER action_jobs_updated_at
    BEFORE UPDATE ON action_jobs
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- action_results: one row per delivery attempt, kept when its trigger is deleted
-- (trigger_id, action_id and job_id become NULL; user_id keeps it visible to its owner).
CREATE TABLE action_results (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        bigint REFERENCES action_jobs (id) ON DELETE SET NULL,
    user_id       uuid REFERENCES users (id) ON DELETE CASCADE,
    trigger_id    uuid REFERENCES triggers (id) ON DELETE SET NULL,
    action_id     uuid REFERENCES trigger_actions (id) ON DELETE SET NULL,
    event_id      bigint,
    chain_id      bigint,
    action_type   text NOT NULL CHECK (action_type IN ('telegram', 'rest', 'mcp')),
    status        text NOT NULL CHECK (status IN ('success', 'failed', 'retrying')),
    retry_count   integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    duration_ms   integer CHECK (duration_ms >= 0),
    error_message text,
    response_data jsonb,
    executed_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX action_results_trigger_idx ON action_results (trigger_id, executed_at DESC);
CREATE INDEX action_results_user_idx ON action_results (user_id, executed_at DESC);
CREATE INDEX action_results_event_idx ON action_results (event_id);
CREATE INDEX action_results_job_idx ON action_results (job_id);
CREATE INDEX action_results_status_idx ON action_results (status, executed_at DESC);
CREATE INDEX action_results_executed_at_idx ON action_results (executed_at DESC);

-- A job a worker is delivering when a reorg orphans its event: the reorg cannot cancel it
-- (the attempt is under way) and used to leave it alone, so a failed attempt went back to
-- the queue and was delivered later, for an event no longer on the chain, and a successful
-- one got no retraction. The reorg now marks it; record_attempts (actions/queue.sql) reads
-- the mark when the attempt ends: delivered, it queues the retraction the action asks for;
-- failed, it cancels the job instead of retrying it. A lease that expires on a marked job
-- cancels it too.
ALTER TABLE action_jobs ADD COLUMN reorged_out boolean NOT NULL DEFAULT false;

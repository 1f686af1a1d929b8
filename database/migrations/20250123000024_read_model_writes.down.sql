ALTER TABLE agents RESET (fillfactor);
ALTER TABLE feedback RESET (fillfactor);
ALTER TABLE feedback_clients RESET (fillfactor);
ALTER TABLE validation_requests RESET (fillfactor);
ALTER TABLE agent_feedback_stats RESET (fillfactor);
ALTER TABLE client_feedback_stats RESET (fillfactor);
ALTER FUNCTION read_model_apply(bigint, bigint, bigint, numeric[], timestamptz, timestamptz)
    RESET work_mem;

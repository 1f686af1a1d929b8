DROP INDEX events_agent_identity_idx;
DROP INDEX agents_wallet_idx;
DROP INDEX agents_owner_idx;
DROP INDEX agents_last_idx;
DROP INDEX agents_first_idx;
ALTER TABLE agent_registrations
    DROP COLUMN file_x402_support,
    DROP COLUMN file_active,
    DROP COLUMN file_description,
    DROP COLUMN file_name;
DROP TRIGGER agents_stats_row ON agents;
DROP TRIGGER feedback_clients_stats_delete ON feedback_clients;
DROP TRIGGER feedback_clients_stats_update ON feedback_clients;
DROP TRIGGER feedback_clients_stats_insert ON feedback_clients;
DROP TRIGGER feedback_stats_delete ON feedback;
DROP TRIGGER feedback_stats_update ON feedback;
DROP TRIGGER feedback_stats_insert ON feedback;
DROP FUNCTION feedback_clients_stats_changed();
DROP FUNCTION agent_stats_row();
DROP FUNCTION feedback_stats_changed();
DROP FUNCTION read_model_changes(text);
DROP TABLE client_feedback_stats;
DROP TABLE agent_feedback_stats;

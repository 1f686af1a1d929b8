-- Fails while actions or results of other channels exist: remove them first.
ALTER TABLE action_results DROP CONSTRAINT action_results_action_type_check;
ALTER TABLE action_results ADD CONSTRAINT action_results_action_type_check
    CHECK (action_type IN ('telegram', 'rest', 'mcp'));
ALTER TABLE trigger_actions DROP CONSTRAINT trigger_actions_action_type_check;
ALTER TABLE trigger_actions ADD CONSTRAINT trigger_actions_action_type_check
    CHECK (action_type IN ('telegram', 'rest', 'mcp'));

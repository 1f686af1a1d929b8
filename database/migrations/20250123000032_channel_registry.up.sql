-- Action types are the channels the application lists (actions/channels.py): the API refuses
-- any other, and the worker dead-letters a row written around it, naming the known ones. The
-- database keeps only their shape, so that a new channel needs no migration.
ALTER TABLE trigger_actions DROP CONSTRAINT trigger_actions_action_type_check;
ALTER TABLE trigger_actions ADD CONSTRAINT trigger_actions_action_type_check
    CHECK (action_type ~ '^[a-z][a-z0-9_]{0,31}$');
ALTER TABLE action_results DROP CONSTRAINT action_results_action_type_check;
ALTER TABLE action_results ADD CONSTRAINT action_results_action_type_check
    CHECK (action_type ~ '^[a-z][a-z0-9_]{0,31}$');

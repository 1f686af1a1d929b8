DROP TRIGGER reputation_lenses_changed ON reputation_lenses;
DROP FUNCTION notify_lens_triggers_changed();
DROP INDEX feedback_clients_client_idx;

DROP TABLE triggers;
DROP FUNCTION notify_trigger_changed();

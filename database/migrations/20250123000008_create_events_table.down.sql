DROP TABLE processing_cursors;
DROP TABLE events;
DROP FUNCTION notify_new_event();

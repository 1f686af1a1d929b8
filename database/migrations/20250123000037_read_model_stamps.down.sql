DROP TRIGGER feedback_clients_stamp_delete ON feedback_clients;
DROP TRIGGER feedback_clients_stamp_update ON feedback_clients;
DROP TRIGGER feedback_clients_stamp_insert ON feedback_clients;
DROP TRIGGER feedback_stamp_delete ON feedback;
DROP TRIGGER feedback_stamp_update ON feedback;
DROP TRIGGER feedback_stamp_insert ON feedback;
DROP FUNCTION read_model_stamp();
DROP TABLE read_model_stamps;

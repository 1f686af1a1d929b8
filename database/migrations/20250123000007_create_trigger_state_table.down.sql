DROP TABLE trigger_state;

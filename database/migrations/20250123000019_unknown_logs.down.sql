DROP TABLE IF EXISTS unknown_logs;

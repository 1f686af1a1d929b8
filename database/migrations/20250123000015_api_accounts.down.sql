DROP INDEX events_time_id_idx;
DROP TABLE api_keys;

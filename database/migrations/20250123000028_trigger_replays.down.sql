DROP TABLE trigger_replays;

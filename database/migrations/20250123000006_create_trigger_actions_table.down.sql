DROP TABLE trigger_actions;

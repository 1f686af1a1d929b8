DROP TABLE trigger_conditions;

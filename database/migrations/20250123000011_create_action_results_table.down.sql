DROP TABLE action_results;
DROP TABLE action_jobs;

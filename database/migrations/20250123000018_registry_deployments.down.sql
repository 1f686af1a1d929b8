DROP TABLE IF EXISTS registry_deployments;

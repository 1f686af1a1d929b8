"""The REST API (`erc8004 api`): accounts, triggers, events, action results, agent tokens,
indexer status, health and metrics, all under /api/v1 (see `app.create_app`)."""

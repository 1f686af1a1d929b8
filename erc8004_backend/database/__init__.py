"""PostgreSQL: connections, the embedded server, migrations, seed data and administration."""

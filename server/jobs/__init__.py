"""Background jobs: leases in the database, the huey queue and the worker process."""

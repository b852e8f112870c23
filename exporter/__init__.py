"""tierwatch: one daemon that watches PostgreSQL, its replicas, PgBouncer and Redis."""

__version__ = "0.1.0"

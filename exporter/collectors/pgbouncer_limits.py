"""PgBouncer's server-connection limits: how many server connections one pool can hold.

PgBouncer opens a server connection for a pool only while three limits all allow it
(`launch_new_connection()` in src/objects.c, 1.18 and 1.24 alike; the reserve pool only
stretches pool_size, cancel requests bypass all three): the pool's `pool_size`,
the database's `max_db_connections` (over all its pools) and the user's
`max_user_connections` (over all its pools); 0 means no limit. Whichever is smallest binds
first, so saturation must divide by it, not by `pool_size` alone, or a pool capped at 1
server with 2 clients queued would read 1.5/2 instead of 3.

Where the numbers come from: `SHOW DATABASES max_connections` is already the effective
database limit (the global `max_db_connections` filled in when the database sets none).
`SHOW USERS max_user_connections` is the effective user limit since 1.23. Before that
(1.18: SHOW USERS is only name and pool_mode) the global `max_user_connections` from SHOW
CONFIG stands for every user, and a per-user `[users]` limit is invisible.

The database and user limits are shared by their pools; this is the bound one pool can
reach when it is the only one busy (a pool whose siblings hold the shared connections can
queue below it; `tierwatch_pgbouncer_database_server_connections` against
`..._database_max_server_connections` shows that case).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter.collectors.base import Row, number

ADMIN_DATABASE = "pgbouncer"


def server_limit(pool_size: float | None, db_max: float | None = None,
                 user_max: float | None = None) -> float | None:
    """The most server connections a pool can hold: the smallest limit that is set.

    A limit of None, 0 or less is no limit (PgBouncer's convention for the database and user
    limits, and for pool_size since 1.24); None when no limit is set at all: an unbounded
    pool has no saturation.
    """
    limits = [limit for limit in (pool_size, db_max, user_max) if limit is not None and limit > 0]
    return min(limits) if limits else None


@dataclass(frozen=True)
class ConnectionLimits:
    """The database and user limits of one poll, from SHOW DATABASES, USERS and CONFIG."""

    per_database: Mapping[str, float]
    per_user: Mapping[str, float]
    default_user: float  # SHOW CONFIG max_user_connections, for users SHOW USERS lacks

    @classmethod
    def from_rows(cls, databases: Sequence[Row], users: Sequence[Row],
                  config: Sequence[Row]) -> ConnectionLimits:
        # a NULL or unreadable cell counts as 0: no limit
        per_database = {str(row["name"]): number(row.get("max_connections")) or 0.0
                        for row in databases
                        if row.get("name") and row.get("name") != ADMIN_DATABASE}
        per_user = {str(row["name"]): number(row.get("max_user_connections")) or 0.0
                    for row in users if row.get("name") and "max_user_connections" in row}
        default_user = next((number(row.get("value")) or 0.0 for row in config
                             if row.get("key") == "max_user_connections"), 0.0)
        return cls(per_database, per_user, default_user)

    def pool_limit(self, pool_size: float | None, database: str, user: str) -> float | None:
        """`server_limit` of the (database, user) pool whose own size is `pool_size`."""
        return server_limit(pool_size, self.per_database.get(database),
                            self.per_user.get(user, self.default_user))

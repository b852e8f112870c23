"""PgBouncer SHOW POOLS + SHOW DATABASES: clients, servers, waits and saturation per pool.

Columns are read by name, so PgBouncer 1.18 through 1.24 all parse: a column an older
version lacks is skipped, a column a newer one adds is ignored.

Pools are created lazily: after a (re)start PgBouncer lists no pool for a database until the
first client logs in to it. A pool that does not exist has no clients and no servers, so its
series are absent ("no pool yet"), never zero; the database's pool_size is still exported.
The `pgbouncer` admin pseudo-database is skipped: it holds only console sessions like ours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from exporter import catalogue as c
from exporter.collectors.base import ALL_ROLES, Column, Output, Row, map_columns, number
from exporter.collectors.pgbouncer_limits import ConnectionLimits
from exporter.model import PollContext, Role

SHOW_POOLS = "SHOW POOLS"
SHOW_DATABASES = "SHOW DATABASES"
SHOW_USERS = "SHOW USERS"
SHOW_CONFIG = "SHOW CONFIG"

ADMIN_DATABASE = "pgbouncer"

# SHOW POOLS column -> family, with the state it stands for
POOL_COLUMNS = (
    Column.of("cl_active", c.BOUNCER_CLIENTS, 1.0, "active"),
    Column.of("cl_waiting", c.BOUNCER_CLIENTS, 1.0, "waiting"),
    Column.of("sv_active", c.BOUNCER_SERVERS, 1.0, "active"),
    Column.of("sv_idle", c.BOUNCER_SERVERS, 1.0, "idle"),
    Column.of("sv_used", c.BOUNCER_SERVERS, 1.0, "used"),
    Column.of("sv_tested", c.BOUNCER_SERVERS, 1.0, "tested"),
    Column.of("sv_login", c.BOUNCER_SERVERS, 1.0, "login"),
    # 1.18 split cl_cancel_req into these and added the server-side cancel states
    Column.of("cl_active_cancel_req", c.BOUNCER_CANCEL_CONNECTIONS, 1.0, "client_active"),
    Column.of("cl_waiting_cancel_req", c.BOUNCER_CANCEL_CONNECTIONS, 1.0, "client_waiting"),
    Column.of("sv_active_cancel", c.BOUNCER_CANCEL_CONNECTIONS, 1.0, "server_active"),
    Column.of("sv_being_canceled", c.BOUNCER_CANCEL_CONNECTIONS, 1.0, "server_being_canceled"),
)

# SHOW DATABASES column(s) -> family; the first column present wins
DATABASE_COLUMNS = (
    # reserve_pool was renamed after 1.18
    Column(("reserve_pool_size", "reserve_pool"), c.BOUNCER_RESERVE_POOL_SIZE),
    Column.of("current_connections", c.BOUNCER_DB_SERVER_CONNECTIONS),
    Column.of("max_connections", c.BOUNCER_DB_MAX_SERVER_CONNECTIONS),
    Column.of("paused", c.BOUNCER_DB_PAUSED),
    Column.of("disabled", c.BOUNCER_DB_DISABLED),
    Column.of("current_client_connections", c.BOUNCER_DB_CLIENT_CONNECTIONS),  # 1.24+
    Column.of("max_client_connections", c.BOUNCER_DB_MAX_CLIENT_CONNECTIONS),  # 1.24+
)

# SHOW USERS column -> family (1.23+; 1.18's SHOW USERS has only name and pool_mode). Its
# text cells pool_size and reserve_pool_size repeat the last set value on later rows
# (1.24.1), so they are not mapped; these are numbers, filled in per row.
USER_COLUMNS = (
    Column.of("current_connections", c.BOUNCER_USER_SERVER_CONNECTIONS),
    Column.of("max_user_connections", c.BOUNCER_USER_MAX_SERVER_CONNECTIONS),
    Column.of("current_client_connections", c.BOUNCER_USER_CLIENT_CONNECTIONS),  # 1.24+
    Column.of("max_user_client_connections", c.BOUNCER_USER_MAX_CLIENT_CONNECTIONS),  # 1.24+
)

# the oldest waiting client's age: whole seconds, plus the microsecond part (since 1.8)
MAXWAIT = Column.of("maxwait", c.BOUNCER_MAX_WAIT)
MAXWAIT_US = Column.of("maxwait_us", c.BOUNCER_MAX_WAIT, 1e-6)


def config_value(rows: Sequence[Row], key: str) -> float | None:
    for row in rows:
        if row.get("key") == key:
            return number(row.get("value"))
    return None


def effective_pool_sizes(
    databases: Sequence[Row], users: Sequence[Row], config: Sequence[Row]
) -> tuple[dict[str, float], dict[str, float]]:
    """(database -> pool size, user -> pool size override).

    SHOW DATABASES already reports the effective size (default_pool_size filled in when the
    database sets none; measured on 1.18, and so in current admin.c). A size missing or
    negative falls back to default_pool_size. A user's pool_size (SHOW USERS, versions after 1.18)
    beats the database's, as in PgBouncer's pool_pool_size().
    """
    default = config_value(config, "default_pool_size")
    per_db: dict[str, float] = {}
    for row in databases:
        name = str(row.get("name", ""))
        if not name or name == ADMIN_DATABASE:
            continue
        size = number(row.get("pool_size"))
        if size is None or size < 0:
            # 0 is a size of its own (1.24: no pool limit; 1.18: no server at all), which
            # the saturation ratio cannot divide by: it is exported, and left unjudged
            size = default
        if size is not None:
            per_db[name] = size
    per_user: dict[str, float] = {}
    for row in users:
        size = number(row.get("pool_size"))  # '' when the user sets none
        if size is not None and size > 0:
            per_user[str(row.get("name", ""))] = size
    return per_db, per_user


class PgbouncerPools:
    name: ClassVar[str] = "pgbouncer_pools"
    roles: ClassVar[frozenset[Role]] = ALL_ROLES

    def queries(self, ctx: PollContext) -> Sequence[str]:
        return (SHOW_POOLS, SHOW_DATABASES, SHOW_USERS, SHOW_CONFIG)

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output:
        databases = results[SHOW_DATABASES]
        per_db, per_user = effective_pool_sizes(databases, results[SHOW_USERS],
                                                results[SHOW_CONFIG])
        # saturation divides by whichever binds first: pool_size or a db/user connection limit
        limits = ConnectionLimits.from_rows(databases, results[SHOW_USERS], results[SHOW_CONFIG])
        out: Output = [c.BOUNCER_POOL_SIZE(size, database) for database, size in per_db.items()]
        for row in databases:
            database = str(row.get("name", ""))
            if database and database != ADMIN_DATABASE:
                out.extend(map_columns(row, DATABASE_COLUMNS, database))
        for row in results[SHOW_USERS]:
            user = str(row.get("name", ""))
            if user and user != ADMIN_DATABASE:  # the console's own user, as its pool
                out.extend(map_columns(row, USER_COLUMNS, user))
        for row in results[SHOW_POOLS]:
            database, user = str(row.get("database", "")), str(row.get("user", ""))
            if database != ADMIN_DATABASE:
                size = per_user.get(user, per_db.get(database))
                out.extend(pool_metrics(row, database, user,
                                        limits.pool_limit(size, database, user)))
        return out


def pool_metrics(row: Row, database: str, user: str, size: float | None) -> Output:
    """One SHOW POOLS row: its clients and servers by state, max wait and saturation."""
    out: Output = list(map_columns(row, POOL_COLUMNS, database, user))
    wait = MAXWAIT.read(row)
    if wait is not None:
        out.append(c.BOUNCER_MAX_WAIT(wait + (MAXWAIT_US.read(row) or 0.0), database, user))
    active, waiting = number(row.get("sv_active")), number(row.get("cl_waiting"))
    if size and active is not None and waiting is not None:
        out.append(c.BOUNCER_SATURATION((active + waiting) / size, database, user))
    return out

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
from typing import Any, ClassVar

from exporter import catalogue as c
from exporter.collectors.base import ALL_ROLES, Output, Row
from exporter.model import PollContext, Role

SHOW_POOLS = "SHOW POOLS"
SHOW_DATABASES = "SHOW DATABASES"
SHOW_USERS = "SHOW USERS"
SHOW_CONFIG = "SHOW CONFIG"

ADMIN_DATABASE = "pgbouncer"

# SHOW POOLS column -> (family, state)
POOL_COLUMNS = (
    ("cl_active", c.BOUNCER_CLIENTS, "active"),
    ("cl_waiting", c.BOUNCER_CLIENTS, "waiting"),
    ("sv_active", c.BOUNCER_SERVERS, "active"),
    ("sv_idle", c.BOUNCER_SERVERS, "idle"),
    ("sv_used", c.BOUNCER_SERVERS, "used"),
    ("sv_tested", c.BOUNCER_SERVERS, "tested"),
    ("sv_login", c.BOUNCER_SERVERS, "login"),
    # 1.18 split cl_cancel_req into these and added the server-side cancel states
    ("cl_active_cancel_req", c.BOUNCER_CANCEL_CONNECTIONS, "client_active"),
    ("cl_waiting_cancel_req", c.BOUNCER_CANCEL_CONNECTIONS, "client_waiting"),
    ("sv_active_cancel", c.BOUNCER_CANCEL_CONNECTIONS, "server_active"),
    ("sv_being_canceled", c.BOUNCER_CANCEL_CONNECTIONS, "server_being_canceled"),
)

# SHOW DATABASES column(s) -> family; the first column present wins
DATABASE_COLUMNS = (
    (("reserve_pool_size", "reserve_pool"), c.BOUNCER_RESERVE_POOL_SIZE),  # renamed after 1.18
    (("current_connections",), c.BOUNCER_DB_SERVER_CONNECTIONS),
    (("max_connections",), c.BOUNCER_DB_MAX_SERVER_CONNECTIONS),
    (("paused",), c.BOUNCER_DB_PAUSED),
    (("disabled",), c.BOUNCER_DB_DISABLED),
)

MAXWAIT = ("maxwait", 1.0)  # whole seconds
MAXWAIT_US = ("maxwait_us", 1e-6)  # the microsecond part, since 1.8


def number(value: Any) -> float | None:
    """A numeric cell as float; None for NULL, '' and anything that is not a number.

    PgBouncer sends int, numeric (SHOW STATS) and text (SHOW CONFIG, SHOW USERS) cells.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(str(value).strip())
    except ValueError:
        return None


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
    database sets none; measured on 1.18, and so in current admin.c). A size missing or <= 0
    falls back to default_pool_size. A user's pool_size (SHOW USERS, versions after 1.18)
    beats the database's, as in PgBouncer's pool_pool_size().
    """
    default = config_value(config, "default_pool_size")
    per_db: dict[str, float] = {}
    for row in databases:
        name = str(row.get("name", ""))
        if not name or name == ADMIN_DATABASE:
            continue
        size = number(row.get("pool_size"))
        if size is None or size <= 0:
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
        out: Output = []
        databases = results[SHOW_DATABASES]
        per_db, per_user = effective_pool_sizes(databases, results[SHOW_USERS],
                                                results[SHOW_CONFIG])
        for database, size in per_db.items():
            out.append(c.BOUNCER_POOL_SIZE(size, database))
        for row in databases:
            database = str(row.get("name", ""))
            if not database or database == ADMIN_DATABASE:
                continue
            for columns, spec in DATABASE_COLUMNS:
                value = next((number(row.get(col)) for col in columns if col in row), None)
                if value is not None:
                    out.append(spec(value, database))

        for row in results[SHOW_POOLS]:
            database, user = str(row.get("database", "")), str(row.get("user", ""))
            if database == ADMIN_DATABASE:
                continue
            for column, spec, state in POOL_COLUMNS:
                value = number(row.get(column))
                if value is not None:
                    out.append(spec(value, database, user, state))
            wait = number(row.get(MAXWAIT[0]))
            if wait is not None:
                fraction = number(row.get(MAXWAIT_US[0])) or 0.0
                out.append(c.BOUNCER_MAX_WAIT(wait * MAXWAIT[1] + fraction * MAXWAIT_US[1],
                                              database, user))
            size = per_user.get(user, per_db.get(database))
            active, waiting = number(row.get("sv_active")), number(row.get("cl_waiting"))
            if size and active is not None and waiting is not None:
                out.append(c.BOUNCER_SATURATION((active + waiting) / size, database, user))
        return out

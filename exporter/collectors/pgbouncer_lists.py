"""PgBouncer SHOW LISTS + SHOW CONFIG: all client connections against max_client_conn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from exporter import catalogue as c
from exporter.collectors.base import ALL_ROLES, Output, Row
from exporter.collectors.pgbouncer_pools import SHOW_CONFIG, config_value, number
from exporter.model import PollContext, Role

SHOW_LISTS = "SHOW LISTS"

# SHOW LISTS `list` -> family. used_clients is the very count PgBouncer compares with
# max_client_conn: every client socket, logging in, admin console (ours) and waiting alike.
LIST_ROWS = (
    ("used_clients", c.BOUNCER_CLIENT_CONNECTIONS),
    ("used_servers", c.BOUNCER_SERVER_CONNECTIONS),
    ("login_clients", c.BOUNCER_LOGIN_CLIENTS),
    ("pools", c.BOUNCER_POOLS),
)

# SHOW CONFIG key -> family
CONFIG_KEYS = (
    ("max_client_conn", c.BOUNCER_MAX_CLIENT_CONNECTIONS),
)


class PgbouncerLists:
    name: ClassVar[str] = "pgbouncer_lists"
    roles: ClassVar[frozenset[Role]] = ALL_ROLES

    def queries(self, ctx: PollContext) -> Sequence[str]:
        return (SHOW_LISTS, SHOW_CONFIG)

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output:
        out: Output = []
        items = {str(row.get("list")): number(row.get("items")) for row in results[SHOW_LISTS]}
        for key, spec in LIST_ROWS:
            value = items.get(key)
            if value is not None:
                out.append(spec(value))
        for key, spec in CONFIG_KEYS:
            value = config_value(results[SHOW_CONFIG], key)
            if value is not None:
                out.append(spec(value))
        return out

"""PgBouncer SHOW LISTS + SHOW CONFIG: all client connections against max_client_conn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from exporter import catalogue as c
from exporter.collectors.base import ALL_ROLES, Column, Output, Row, map_columns
from exporter.collectors.pgbouncer_pools import SHOW_CONFIG
from exporter.model import PollContext, Role

SHOW_LISTS = "SHOW LISTS"

# SHOW LISTS `list` -> family. used_clients is the very count PgBouncer compares with
# max_client_conn: every client socket, logging in, admin console (ours) and waiting alike.
# Both commands answer key/value rows, read here as one row keyed by `list` or `key`.
LIST_ROWS = (
    Column.of("used_clients", c.BOUNCER_CLIENT_CONNECTIONS),
    Column.of("used_servers", c.BOUNCER_SERVER_CONNECTIONS),
    Column.of("login_clients", c.BOUNCER_LOGIN_CLIENTS),
    Column.of("pools", c.BOUNCER_POOLS),
)

# SHOW CONFIG key -> family
CONFIG_KEYS = (
    Column.of("max_client_conn", c.BOUNCER_MAX_CLIENT_CONNECTIONS),
)


def key_values(rows: Sequence[Row], key: str, value: str) -> dict[str, object]:
    return {str(row.get(key)): row.get(value) for row in rows}


class PgbouncerLists:
    name: ClassVar[str] = "pgbouncer_lists"
    roles: ClassVar[frozenset[Role]] = ALL_ROLES

    def queries(self, ctx: PollContext) -> Sequence[str]:
        return (SHOW_LISTS, SHOW_CONFIG)

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output:
        out: Output = []
        out.extend(map_columns(key_values(results[SHOW_LISTS], "list", "items"), LIST_ROWS))
        out.extend(map_columns(key_values(results[SHOW_CONFIG], "key", "value"), CONFIG_KEYS))
        return out

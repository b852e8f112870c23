"""PgBouncer SHOW POOLS: clients and servers per pool."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from exporter import catalogue as c
from exporter.collectors.base import ALL_ROLES, Output, Row
from exporter.model import PollContext, Role

SHOW_POOLS = "SHOW POOLS"

# column -> (family, state); columns missing in an older PgBouncer are skipped
CLIENT_STATES = (
    ("cl_active", "active"),
    ("cl_waiting", "waiting"),
)


class PgbouncerPools:
    name: ClassVar[str] = "pgbouncer_pools"
    roles: ClassVar[frozenset[Role]] = ALL_ROLES

    def queries(self, ctx: PollContext) -> Sequence[str]:
        return (SHOW_POOLS,)

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output:
        out: Output = []
        for row in results[SHOW_POOLS]:
            database, user = str(row.get("database", "")), str(row.get("user", ""))
            for column, state in CLIENT_STATES:
                if row.get(column) is not None:
                    out.append(c.BOUNCER_CLIENTS(row[column], database, user, state))
        return out

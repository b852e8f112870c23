"""PostgreSQL role, version, WAL position and connection limit: the query every poll
starts with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from exporter import catalogue as c
from exporter.collectors.base import ALL_ROLES, Output, Row
from exporter.model import PollContext, Role
from exporter.replication import ServerPosition

# The poller reads the role from this query's row before any other collector parses, so the
# whole poll still costs one round trip. pg_current_wal_lsn() raises on a replica and
# pg_last_wal_replay_lsn() is NULL on a primary: each is guarded by the role.
STATUS_SQL = """SELECT pg_is_in_recovery() AS in_recovery,
  CASE WHEN pg_is_in_recovery() THEN NULL
       ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 END AS current_wal_bytes,
  CASE WHEN pg_is_in_recovery()
       THEN pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::float8 END AS replay_wal_bytes,
  current_setting('max_connections')::float8 AS max_connections,
  extract(epoch FROM now())::float8 AS server_now"""


def version_text(server_version_num: int) -> str:
    """150014 -> "15.14"; before 10 the version had three parts: 90624 -> "9.6.24"."""
    major, rest = divmod(server_version_num, 10000)
    if major >= 10:
        return f"{major}.{rest}"
    return f"{major}.{rest // 100}.{rest % 100}"


def role_of(rows: Sequence[Row]) -> Role:
    return Role.REPLICA if rows and rows[0]["in_recovery"] else Role.PRIMARY


class PgStatus:
    name: ClassVar[str] = "pg_status"
    roles: ClassVar[frozenset[Role]] = ALL_ROLES

    def queries(self, ctx: PollContext) -> Sequence[str]:
        return (STATUS_SQL,)

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output:
        row = results[STATUS_SQL][0]
        out: Output = [
            c.PG_IN_RECOVERY(1 if row["in_recovery"] else 0),
            c.PG_MAX_CONNECTIONS(row["max_connections"]),
        ]
        if ctx.server_version:  # from the connection's startup, no query
            out.append(c.PG_SERVER_INFO(1, version_text(ctx.server_version)))
        # the role and the primary's position: replica replay positions are dated with it,
        # and a primary that comes back in recovery was demoted
        current = row["current_wal_bytes"]
        out.append(ServerPosition(bool(row["in_recovery"]),
                                  float(current) if current is not None else None))
        position = current
        if position is None:
            position = row.get("replay_wal_bytes")
        if position is not None:
            out.append(c.PG_WAL_POSITION(position))
        return out

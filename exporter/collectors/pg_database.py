"""pg_stat_database + pg_database: block hits and reads, sessions, and the frozen-XID age."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from exporter import catalogue as c
from exporter.collectors.base import ALL_ROLES, Column, Output, Row, map_columns, number
from exporter.model import PollContext, Role

# One row per database from the statistics collector; no database is connected to. The
# row with datname NULL (PostgreSQL 12+) counts shared catalogs and is left out.
# The session counters arrived in PostgreSQL 14; age(datfrozenxid) is read from the
# pg_database catalog, which every role may read (no table of any database is touched).
DATABASE_SQL = """SELECT s.datname,
  s.blks_hit::float8 AS blks_hit, s.blks_read::float8 AS blks_read,
  s.sessions::float8 AS sessions, s.sessions_abandoned::float8 AS sessions_abandoned,
  s.sessions_fatal::float8 AS sessions_fatal, s.sessions_killed::float8 AS sessions_killed,
  age(d.datfrozenxid)::float8 AS frozen_xid_age
FROM pg_stat_database s JOIN pg_database d ON d.oid = s.datid
WHERE s.datname IS NOT NULL"""

# column -> family (blocks are block_size bytes each; sessions and XIDs are counts)
COLUMNS = (
    Column.of("blks_hit", c.PG_BLOCKS_HIT),
    Column.of("blks_read", c.PG_BLOCKS_READ),
    Column.of("sessions", c.PG_SESSIONS),
    Column.of("sessions_abandoned", c.PG_SESSIONS_ABANDONED),
    Column.of("sessions_fatal", c.PG_SESSIONS_FATAL),
    Column.of("sessions_killed", c.PG_SESSIONS_KILLED),
    Column.of("frozen_xid_age", c.PG_FROZEN_XID_AGE),
)


def hit_ratio(
    hit: float, read: float, previous_hit: float | None, previous_read: float | None
) -> float | None:
    """hit ÷ (hit + read) between two polls; None without a previous poll, when no block
    was accessed, or when a counter went backwards (stats reset, server replaced)."""
    if previous_hit is None or previous_read is None:
        return None
    delta_hit, delta_read = hit - previous_hit, read - previous_read
    if delta_hit < 0 or delta_read < 0 or delta_hit + delta_read == 0:
        return None
    return delta_hit / (delta_hit + delta_read)


class PgDatabase:
    name: ClassVar[str] = "pg_database"
    roles: ClassVar[frozenset[Role]] = ALL_ROLES

    def queries(self, ctx: PollContext) -> Sequence[str]:
        return (DATABASE_SQL,)

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output:
        out: Output = []
        for row in results[DATABASE_SQL]:
            datname = str(row["datname"])
            out.extend(map_columns(row, COLUMNS, datname))
            hit, read = number(row["blks_hit"]), number(row["blks_read"])
            if hit is None or read is None:
                continue
            ratio = hit_ratio(
                hit,
                read,
                ctx.previous_value(c.PG_BLOCKS_HIT, datname),
                ctx.previous_value(c.PG_BLOCKS_READ, datname),
            )
            if ratio is not None:
                out.append(c.PG_CACHE_HIT_RATIO(ratio, datname))
        return out

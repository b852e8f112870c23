"""pg_stat_database: shared buffer hits and block reads per database, and the hit ratio."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from exporter import catalogue as c
from exporter.collectors.base import ALL_ROLES, Output, Row
from exporter.model import PollContext, Role

# One row per database from the statistics collector; no database is connected to. The
# row with datname NULL (PostgreSQL 12+) counts shared catalogs and is left out.
DATABASE_SQL = """SELECT datname, blks_hit::float8 AS blks_hit, blks_read::float8 AS blks_read
FROM pg_stat_database
WHERE datname IS NOT NULL"""

# column -> counter family (unit: blocks, block_size bytes each)
COUNTERS = (
    ("blks_hit", c.PG_BLOCKS_HIT),
    ("blks_read", c.PG_BLOCKS_READ),
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
            hit, read = row["blks_hit"], row["blks_read"]
            for column, spec in COUNTERS:
                if row[column] is not None:
                    out.append(spec(row[column], datname))
            if hit is None or read is None:
                continue
            ratio = hit_ratio(
                float(hit),
                float(read),
                ctx.previous_value(c.PG_BLOCKS_HIT, datname),
                ctx.previous_value(c.PG_BLOCKS_READ, datname),
            )
            if ratio is not None:
                out.append(c.PG_CACHE_HIT_RATIO(ratio, datname))
        return out

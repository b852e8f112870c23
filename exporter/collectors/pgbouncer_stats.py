"""PgBouncer SHOW STATS: per-database traffic counters, microseconds converted to seconds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from exporter import catalogue as c
from exporter.collectors.base import ALL_ROLES, Column, Output, Row, map_columns
from exporter.collectors.pgbouncer_pools import ADMIN_DATABASE
from exporter.model import PollContext, Role

SHOW_STATS = "SHOW STATS"

# column -> family, factor to base units; totals are since PgBouncer started
STATS_COLUMNS = (
    Column.of("total_xact_count", c.BOUNCER_TRANSACTIONS),
    Column.of("total_query_count", c.BOUNCER_QUERIES),
    Column.of("total_wait_time", c.BOUNCER_WAIT_SECONDS, 1e-6),  # microseconds
    Column.of("total_xact_time", c.BOUNCER_TRANSACTION_SECONDS, 1e-6),  # microseconds
    Column.of("total_query_time", c.BOUNCER_QUERY_SECONDS, 1e-6),  # microseconds
    Column.of("total_received", c.BOUNCER_RECEIVED_BYTES),
    Column.of("total_sent", c.BOUNCER_SENT_BYTES),
    Column.of("total_server_assignment_count", c.BOUNCER_SERVER_ASSIGNMENTS),  # added in 1.23
    Column.of("avg_wait_time", c.BOUNCER_AVG_WAIT, 1e-6),  # microseconds, per stats_period
    Column.of("total_client_parse_count", c.BOUNCER_CLIENT_PARSES),  # added in 1.21
    Column.of("total_server_parse_count", c.BOUNCER_SERVER_PARSES),  # added in 1.21
    Column.of("total_bind_count", c.BOUNCER_BINDS),  # added in 1.21
)


class PgbouncerStats:
    name: ClassVar[str] = "pgbouncer_stats"
    roles: ClassVar[frozenset[Role]] = ALL_ROLES

    def queries(self, ctx: PollContext) -> Sequence[str]:
        return (SHOW_STATS,)

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output:
        out: Output = []
        for row in results[SHOW_STATS]:
            database = str(row.get("database", ""))
            if database != ADMIN_DATABASE:  # counts only admin-console commands, ours included
                out.extend(map_columns(row, STATS_COLUMNS, database))
        return out

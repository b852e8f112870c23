"""PostgreSQL: every collector's query in one round trip; the role decides which parse."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import psycopg

from exporter.collectors import POSTGRES_COLLECTORS
from exporter.collectors.base import SqlCollector
from exporter.collectors.pg_status import STATUS_SQL, role_of
from exporter.model import Kind, PollContext
from exporter.sources.sql import Results, SqlSource, run_batch


class PostgresSource(SqlSource):
    kind: ClassVar[Kind] = Kind.POSTGRES
    collectors: ClassVar[tuple[SqlCollector, ...]] = POSTGRES_COLLECTORS
    phase_group: ClassVar[str | None] = "postgres"  # WAL samples: see scheduler.py

    def prepare(self, ctx: PollContext, conn: psycopg.AsyncConnection[Any]) -> PollContext:
        # the version comes with the connection's startup: no query
        return replace(ctx, server_version=conn.info.server_version)

    def detect(self, ctx: PollContext, results: Results) -> PollContext:
        # the status query's row says primary or replica before any collector parses, so
        # the whole poll still costs one round trip; without it the poll has failed
        status = results.get(STATUS_SQL)
        if isinstance(status, BaseException):
            raise status
        return replace(ctx, role=role_of(status or ()))

    def applicable(self, ctx: PollContext) -> Iterable[SqlCollector]:
        return [c for c in self.collectors if ctx.role is None or ctx.role in c.roles]

    async def run(self, conn: psycopg.AsyncConnection[Any], queries: Sequence[str]) -> Results:
        return await run_batch(conn, queries)

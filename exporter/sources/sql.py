"""What PostgreSQL and PgBouncer sources share: a psycopg pool and collectors of rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any, ClassVar

import psycopg
from psycopg_pool import PoolTimeout

from exporter.collectors.base import Row, SqlCollector
from exporter.config import Settings
from exporter.connections import ConnectError, PgPool, PoolStats
from exporter.model import Kind, PollContext
from exporter.sources.base import Fetched, PollError, describe, guarded
from exporter.targets import PgbouncerTarget, PostgresTarget

Results = dict[str, Sequence[Row] | BaseException]


class SqlSource:
    """A target spoken to over libpq; subclasses say how its queries run and which
    collectors apply to this poll."""

    kind: ClassVar[Kind]
    collectors: ClassVar[tuple[SqlCollector, ...]]
    admin_console: ClassVar[bool] = False
    phase_group: ClassVar[str | None] = None

    def __init__(self, target: PostgresTarget | PgbouncerTarget, settings: Settings) -> None:
        self.pool = PgPool(target, settings, admin_console=self.admin_console)
        self._connected = False

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    def stats(self) -> PoolStats:
        return self.pool.stats()

    def stalled_reason(self) -> str | None:
        # a refused attempt ends at once (PgPool.connection); one that hangs (a frozen
        # server, a peer stuck mid-handshake) lasts past the deadline: if an earlier
        # attempt failed, its reason says more than "no answer"
        error = self.pool.last_connect_error
        return f"cannot connect: {error}" if not self._connected and error else None

    async def fetch(self, ctx: PollContext) -> Fetched:
        self._connected = False
        try:
            async with self.pool.connection() as conn:
                self._connected = True
                ctx = self.prepare(ctx, conn)
                wanted = list(dict.fromkeys(q for col in self.collectors for q in col.queries(ctx)))
                results = await self.run(conn, wanted)
        except (ConnectError, PoolTimeout) as exc:
            reason = self.pool.last_connect_error or str(exc) or "no connection available"
            raise PollError(f"cannot connect: {reason}") from None
        ctx = self.detect(ctx, results)
        return parse_all(self.applicable(ctx), results, ctx)

    def prepare(self, ctx: PollContext, conn: psycopg.AsyncConnection[Any]) -> PollContext:
        return ctx

    def detect(self, ctx: PollContext, results: Results) -> PollContext:
        return ctx

    def applicable(self, ctx: PollContext) -> Iterable[SqlCollector]:
        return self.collectors

    async def run(self, conn: psycopg.AsyncConnection[Any], queries: Sequence[str]) -> Results:
        return await run_each(conn, queries)


def parse_all(collectors: Iterable[SqlCollector], results: Results, ctx: PollContext) -> Fetched:
    fetched = Fetched()
    for collector in collectors:
        mine: dict[str, Sequence[Row]] = {}
        failed: BaseException | None = None
        for query in collector.queries(ctx):
            rows = results.get(query)
            if isinstance(rows, BaseException) or rows is None:
                failed = rows if rows is not None else PollError("no result")
                break
            mine[query] = rows
        if failed is not None:
            fetched.add(collector.name, None, describe(failed))
            continue
        fetched.add(collector.name, guarded(collector.name, partial(collector.parse, mine, ctx)))
    return fetched


async def run_batch(conn: psycopg.AsyncConnection[Any], queries: Sequence[str]) -> Results:
    """All queries in one round trip (simple protocol, one multi-statement string).

    One failing statement aborts the whole string, so on an error each query is re-run on
    its own to find which collector is broken; the rest still report.
    """
    try:
        async with conn.cursor() as cur:
            await cur.execute(";\n".join(queries).encode())
            results: Results = {}
            for index, query in enumerate(queries):
                if index:
                    cur.nextset()
                results[query] = await cur.fetchall()
            return results
    except psycopg.Error:
        if conn.closed or conn.broken:
            raise
    return await run_each(conn, queries)


async def run_each(conn: psycopg.AsyncConnection[Any], queries: Sequence[str]) -> Results:
    results: Results = {}
    for query in queries:
        try:
            async with conn.cursor() as cur:
                await cur.execute(query.encode())
                results[query] = await cur.fetchall()
        except psycopg.Error as exc:
            if conn.closed or conn.broken:
                raise
            results[query] = exc
    return results

"""Polls one target under a hard deadline and turns whatever happens into a snapshot."""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import psycopg
import redis.exceptions
from psycopg_pool import PoolTimeout

from exporter import catalogue as c
from exporter.cluster import ClusterState
from exporter.collectors import PGBOUNCER_COLLECTORS, POSTGRES_COLLECTORS, REDIS_COLLECTORS
from exporter.collectors.base import Output, Row, SqlCollector
from exporter.collectors.pg_status import STATUS_SQL, role_of
from exporter.config import PgbouncerTarget, PostgresTarget, RedisTarget, Settings
from exporter.connections import PgPool, PoolStats, RedisClient
from exporter.model import Fact, Kind, Metric, PollContext, TargetId
from exporter.secrets import SECRETS
from exporter.snapshot import POLL_BUCKETS, Histogram, TargetSnapshot

log = logging.getLogger(__name__)

AnyTarget = PostgresTarget | PgbouncerTarget | RedisTarget


class PollError(Exception):
    """A poll failed as a whole; the message is one redacted line."""


@dataclass(slots=True)
class _Progress:
    """How far one poll got; read when it runs into its deadline."""

    connected: bool = False  # a SQL poll got a connection from its pool


@dataclass(slots=True)
class _Outcome:
    metrics: list[Metric]
    facts: dict[str, Any]
    collector_ok: dict[str, bool]


def describe(exc: BaseException) -> str:
    """One line that says what went wrong, without any configured secret."""
    if isinstance(exc, PollError):
        text = str(exc)
    else:
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else ""
        text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return SECRETS.scrub(text)


def kind_of(target: AnyTarget) -> Kind:
    if isinstance(target, PostgresTarget):
        return Kind.POSTGRES
    if isinstance(target, PgbouncerTarget):
        return Kind.PGBOUNCER
    return Kind.REDIS


class TargetPoller:
    """One target: its connection pool, its poll statistics and its last snapshot."""

    def __init__(
        self, cluster: ClusterState, config: AnyTarget, settings: Settings
    ) -> None:
        self.config = config
        self.kind = kind_of(config)
        self.id = TargetId(cluster.name, config.name, self.kind)
        self.cluster = cluster
        self.interval = settings.interval_of(config)
        self.deadline = settings.deadline_of(config)
        self.jitter = settings.jitter_of(config)
        self.connection: PgPool | RedisClient
        if isinstance(config, RedisTarget):
            self.connection = RedisClient(config, settings)
        else:
            self.connection = PgPool(config, settings, admin_console=self.kind is Kind.PGBOUNCER)
        self._errors = 0
        self._buckets = [0] * len(POLL_BUCKETS)
        self._duration_sum = 0.0
        self._count = 0
        self._last_success: float | None = None
        self._last: TargetSnapshot | None = None
        self._last_good: TargetSnapshot | None = None
        self._failed_collectors: set[str] = set()
        self._config_get_refused = False  # Redis: CONFIG GET denied once, never retried
        self._lingering: set[asyncio.Task[Any]] = set()

    @property
    def last(self) -> TargetSnapshot | None:
        return self._last

    async def open(self) -> None:
        await self.connection.open()

    async def close(self) -> None:
        for task in list(self._lingering):
            task.cancel()
        await self.connection.close()

    async def poll(self) -> TargetSnapshot:
        """Poll once; never raises except CancelledError. The deadline is hard: a poll
        stuck on a frozen server is abandoned (and cancelled in the background) on time."""
        started = time.time()
        t0 = time.perf_counter()
        ctx = self._context(started)
        progress = _Progress()
        task = asyncio.create_task(self._collect(ctx, progress), name=f"poll {self.id}")
        try:
            done, _ = await asyncio.wait({task}, timeout=self.deadline)
        except asyncio.CancelledError:
            task.cancel()
            raise
        outcome: _Outcome | None = None
        error: str | None = None
        if task in done:
            exc = task.exception()
            if exc is None:
                outcome = task.result()
            else:
                error = describe(exc)
        else:
            task.cancel()
            self._lingering.add(task)
            task.add_done_callback(self._forget_lingering)
            error = self._deadline_error(progress)
        return self._finish(started, time.perf_counter() - t0, outcome, error)

    def _deadline_error(self, progress: _Progress) -> str:
        # A refused attempt ends the wait at once (PgPool.connection); one that hangs (a
        # frozen server, a peer stuck mid-handshake) lasts past the deadline: if an earlier
        # attempt failed, its reason says more than "no answer"
        pool = self.connection
        if isinstance(pool, PgPool) and not progress.connected and pool.last_connect_error:
            return f"cannot connect: {pool.last_connect_error}"
        return f"no answer within the poll deadline of {self.deadline:g}s"

    def _forget_lingering(self, task: asyncio.Task[Any]) -> None:
        self._lingering.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not warn about it

    def _context(self, now: float) -> PollContext:
        good = self._last_good
        return PollContext(
            target=self.id,
            now=now,
            previous=MappingProxyType(good.values()) if good else MappingProxyType({}),
            previous_time=good.polled_at if good else None,
            cluster=self.cluster.view(),
        )

    async def _collect(self, ctx: PollContext, progress: _Progress) -> _Outcome:
        if isinstance(self.connection, RedisClient):
            return await self._collect_redis(self.connection, ctx)
        return await self._collect_sql(self.connection, ctx, progress)

    async def _collect_redis(self, client: RedisClient, ctx: PollContext) -> _Outcome:
        info = await client.client.info()
        if "maxclients" not in info and not self._config_get_refused:
            info = {**info, **await self._config_maxclients(client)}
        outputs = {}
        for collector in REDIS_COLLECTORS:
            outputs[collector.name] = _guard(collector.name, lambda c=collector: c.parse(info, ctx))
        return _merge(outputs)

    async def _config_maxclients(self, client: RedisClient) -> dict[str, Any]:
        """Redis before 6.2 has no maxclients in INFO: ask CONFIG GET if the ACL allows it.

        A refusal (NOPERM, or CONFIG renamed away) only leaves tierwatch_redis_max_clients
        out, and is remembered: every denied call would add an entry to the server's ACL LOG.
        """
        try:
            answer = await client.client.config_get("maxclients")
        except redis.exceptions.ResponseError as exc:
            self._config_get_refused = True
            log.info("CONFIG GET maxclients refused on %s, max_clients left out: %s",
                     self.id, describe(exc))
            return {}
        for key, value in answer.items():
            if _text(key) == "maxclients":
                return {"maxclients": _text(value)}
        return {}

    async def _collect_sql(
        self, pool: PgPool, ctx: PollContext, progress: _Progress
    ) -> _Outcome:
        collectors = POSTGRES_COLLECTORS if self.kind is Kind.POSTGRES else PGBOUNCER_COLLECTORS
        try:
            async with pool.connection() as conn:
                progress.connected = True
                if self.kind is Kind.POSTGRES:
                    ctx = replace(ctx, server_version=conn.info.server_version)
                wanted = _unique(q for col in collectors for q in col.queries(ctx))
                if self.kind is Kind.POSTGRES:
                    results = await _run_batch(conn, wanted)
                else:
                    results = await _run_each(conn, wanted)
        except PoolTimeout:
            reason = pool.last_connect_error or "no connection available"
            raise PollError(f"cannot connect: {reason}") from None
        if self.kind is Kind.POSTGRES:
            status = results.get(STATUS_SQL)
            if isinstance(status, BaseException):
                raise status
            ctx = replace(ctx, role=role_of(status or ()))
        outputs: dict[str, Output | None] = {}
        for collector in collectors:
            if ctx.role is not None and ctx.role not in collector.roles:
                continue
            outputs[collector.name] = self._parse(collector, results, ctx)
        return _merge(outputs)

    def _parse(
        self,
        collector: SqlCollector,
        results: Mapping[str, Sequence[Row] | BaseException],
        ctx: PollContext,
    ) -> Output | None:
        mine: dict[str, Sequence[Row]] = {}
        for query in collector.queries(ctx):
            rows = results.get(query)
            if isinstance(rows, BaseException) or rows is None:
                self._collector_failed(collector.name, rows)
                return None
            mine[query] = rows
        output = _guard(collector.name, lambda: collector.parse(mine, ctx))
        if output is None:
            self._collector_failed(collector.name, None)
        else:
            self._failed_collectors.discard(collector.name)
        return output

    def _collector_failed(self, name: str, exc: BaseException | None) -> None:
        if name not in self._failed_collectors:
            self._failed_collectors.add(name)
            why = describe(exc) if exc is not None else "its output could not be parsed"
            log.warning("collector %s failed on %s: %s", name, self.id, why)

    def _finish(
        self, started: float, duration: float, outcome: _Outcome | None, error: str | None
    ) -> TargetSnapshot:
        up = outcome is not None
        self._count += 1
        self._duration_sum += duration
        index = bisect.bisect_left(POLL_BUCKETS, duration)
        for i in range(index, len(self._buckets)):
            self._buckets[i] += 1
        previous = self._last
        if up:
            self._last_success = time.time()
            if previous is not None and not previous.up:
                log.info("target %s is up again", self.id)
        else:
            self._errors += 1
            if previous is None or previous.up or previous.error != error:
                log.warning("poll of %s failed: %s", self.id, error)
        kind = self.kind.value
        daemon: list[Metric] = [c.UP(1 if up else 0, kind), c.POLL_ERRORS(self._errors, kind)]
        if self._last_success is not None:
            daemon.append(c.LAST_SUCCESS(self._last_success, kind))
        daemon.extend(_pool_metrics(self.connection.stats(), kind))
        if outcome is not None:
            for name, ok in outcome.collector_ok.items():
                daemon.append(c.COLLECTOR_SUCCESS(1 if ok else 0, kind, name))
        snapshot = TargetSnapshot(
            target=self.id,
            up=up,
            polled_at=started,
            metrics=tuple(outcome.metrics) if outcome else (),
            daemon_metrics=tuple(daemon),
            poll_duration=Histogram(tuple(self._buckets), self._duration_sum, self._count),
            facts=MappingProxyType(outcome.facts if outcome else {}),
            error=error,
            interval=self.interval,
        )
        self._last = snapshot
        if up:
            self._last_good = snapshot
        self.cluster.record(snapshot)
        return snapshot


def _pool_metrics(stats: PoolStats, kind: str) -> list[Metric]:
    return [
        c.POOL_CONNECTIONS(stats.idle, kind, "idle"),
        c.POOL_CONNECTIONS(stats.used, kind, "used"),
        c.POOL_MAX_CONNECTIONS(stats.max, kind),
    ]


def _guard(name: str, parse: Any) -> Output | None:
    """Runs one collector's parser; a bug or odd server output (including a label value
    that is not text, refused by MetricSpec) drops only that collector."""
    try:
        return list(parse())
    except Exception:
        log.debug("collector %s raised", name, exc_info=True)
        return None


def _merge(outputs: Mapping[str, Output | None]) -> _Outcome:
    metrics: list[Metric] = []
    facts: dict[str, Any] = {}
    ok: dict[str, bool] = {}
    for name, output in outputs.items():
        ok[name] = output is not None
        for item in output or ():
            if isinstance(item, Fact):
                facts[item.key] = item.value
            else:
                metrics.append(item)
    return _Outcome(metrics, facts, ok)


def _text(value: Any) -> str:
    # "replace": a reply that is not UTF-8 must not fail the whole poll
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _unique(queries: Any) -> list[str]:
    return list(dict.fromkeys(queries))


async def _run_batch(
    conn: psycopg.AsyncConnection[Any], queries: Sequence[str]
) -> dict[str, Sequence[Row] | BaseException]:
    """All queries in one round trip (simple protocol, one multi-statement string).

    One failing statement aborts the whole string, so on an error each query is re-run on
    its own to find which collector is broken; the rest still report.
    """
    try:
        async with conn.cursor() as cur:
            await cur.execute(";\n".join(queries))  # type: ignore[arg-type]
            results: dict[str, Sequence[Row] | BaseException] = {}
            for index, query in enumerate(queries):
                if index:
                    cur.nextset()
                results[query] = await cur.fetchall()
            return results
    except psycopg.Error:
        if conn.closed or conn.broken:
            raise
    return await _run_each(conn, queries)


async def _run_each(
    conn: psycopg.AsyncConnection[Any], queries: Sequence[str]
) -> dict[str, Sequence[Row] | BaseException]:
    results: dict[str, Sequence[Row] | BaseException] = {}
    for query in queries:
        try:
            async with conn.cursor() as cur:
                await cur.execute(query)  # type: ignore[arg-type]
                results[query] = await cur.fetchall()
        except psycopg.Error as exc:
            if conn.closed or conn.broken:
                raise
            results[query] = exc
    return results

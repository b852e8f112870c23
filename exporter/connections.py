"""The daemon's own small, bounded connection pools: the only place that sees real secrets."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from redis._parsers import _AsyncRESP3Parser
from redis.backoff import NoBackoff
from redis.exceptions import InvalidResponse
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry

from exporter.config import PgbouncerTarget, PostgresTarget, RedisTarget, Settings
from exporter.secrets import SECRETS

log = logging.getLogger(__name__)

APPLICATION_NAME = "tierwatch"


@dataclass(frozen=True, slots=True)
class PoolStats:
    idle: int
    used: int
    max: int


class ConnectFailed(PoolTimeout):
    """The pool's attempt to connect failed: reported now, not at the pool timeout."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return SECRETS.scrub(text[0] if text else type(exc).__name__)


class PgPool:
    """A psycopg pool for one PostgreSQL or PgBouncer target.

    min_size 1 keeps one warm connection, so steady-state polling opens no new sessions.
    PgBouncer's admin console speaks only the simple query protocol and allows no
    transactions: autocommit, and prepare_threshold=None so a repeated SHOW is never
    turned into a server-side prepared statement.
    """

    def __init__(
        self,
        target: PostgresTarget | PgbouncerTarget,
        settings: Settings,
        *,
        admin_console: bool,
    ) -> None:
        password = target.password()
        if password:
            SECRETS.add(password)
        overrides: dict[str, Any] = {
            "password": password,
            "application_name": APPLICATION_NAME,
            "connect_timeout": max(1, round(settings.connect_timeout)),
        }
        if not admin_console:
            # PgBouncer rejects the `options` startup parameter; PostgreSQL gets hard limits
            ms = int(settings.statement_timeout * 1000)
            overrides["options"] = f"-c statement_timeout={ms} -c lock_timeout={ms}"
        self._kwargs = target.dsn.reveal(**overrides)
        self._kwargs.update(autocommit=True, prepare_threshold=None, row_factory=dict_row)
        self.last_connect_error: str | None = None
        self.max_size = settings.pool_max_connections
        self._gave_up = asyncio.Event()
        self._returning: set[asyncio.Future[Any]] = set()
        owner = self

        class _Connection(psycopg.AsyncConnection[Any]):
            # remembers why connecting failed: the pool itself only reports a timeout
            @classmethod
            async def connect(cls, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
                try:
                    conn = await super().connect(*args, **kwargs)
                except Exception as exc:
                    owner.last_connect_error = _first_line(exc)
                    # psycopg leaves a timed-out attempt's libpq connection (and its socket)
                    # in the failed frame, kept alive by a cycle through the exception until
                    # a full GC: a frozen server would see it sit in authentication for
                    # authentication_timeout. Clearing the frames closes it now.
                    traceback.clear_frames(exc.__traceback__)
                    raise
                owner.last_connect_error = None
                return conn

        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo="",
            kwargs=self._kwargs,
            connection_class=_Connection,
            min_size=1,
            max_size=self.max_size,
            open=False,
            name=f"tierwatch:{target.name}",
            timeout=settings.connect_timeout,
            # A failed attempt is retried once at once, then given up (reconnect_failed):
            # the next poll's request starts a new one. Nothing retries in the background.
            reconnect_timeout=0,
            reconnect_failed=self._attempt_given_up,
            num_workers=1,
        )

    def _attempt_given_up(self, _pool: AsyncConnectionPool[Any]) -> None:
        self._gave_up.set()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A connection from the pool, or ConnectFailed as soon as the attempt to open one
        fails (a refused port, an unknown host, "too many clients"), where the pool itself
        would wait out its timeout. A frozen server still takes the timeout (or the poll
        deadline): its attempt neither succeeds nor fails. One poll at a time waits here."""
        self._gave_up.clear()
        getting = asyncio.ensure_future(self.pool.getconn())
        gave_up = asyncio.ensure_future(self._gave_up.wait())
        try:
            await asyncio.wait((getting, gave_up), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the poll's deadline cancelled it
            self._abandon(getting)
            raise
        finally:
            gave_up.cancel()
        if not getting.done():
            self._abandon(getting)
            raise ConnectFailed(self.last_connect_error or "the connection attempt failed")
        conn = getting.result()
        try:
            yield conn
        finally:
            await self.pool.putconn(conn)

    def _abandon(self, getting: asyncio.Future[Any]) -> None:
        """Stop waiting; a connection already handed over (or handed over while the cancel
        is on its way) goes back to the pool."""
        getting.cancel()
        getting.add_done_callback(self._return_unused)

    def _return_unused(self, getting: asyncio.Future[Any]) -> None:
        if getting.cancelled() or getting.exception() is not None:
            return
        putting = asyncio.ensure_future(self.pool.putconn(getting.result()))
        self._returning.add(putting)  # a task nobody awaits needs a reference
        putting.add_done_callback(self._returning.discard)

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close(timeout=1.0)

    def stats(self) -> PoolStats:
        s = self.pool.get_stats()
        size, available = s.get("pool_size", 0), s.get("pool_available", 0)
        return PoolStats(idle=available, used=max(0, size - available), max=self.max_size)


# Every reply tierwatch asks for (INFO, CONFIG GET maxclients) is a few KiB.
MAX_REDIS_BULK_BYTES = 1 << 20


class _BoundedParser(_AsyncRESP3Parser):
    """redis-py's RESP3 parser (its default), refusing a bulk reply over MAX_REDIS_BULK_BYTES.

    Unbounded, a broken or hostile endpoint that announces a huge bulk string and keeps
    sending makes each connection buffer up to 512 MiB, and the copying stalls the event
    loop, so every other target's polls run late.
    """

    async def _read(self, length: int) -> bytes:
        if length > MAX_REDIS_BULK_BYTES:
            raise InvalidResponse(f"a bulk reply of {length} bytes refused")
        return await super()._read(length)


class RedisClient:
    """One redis-py asyncio client with a small blocking pool for one Redis target."""

    def __init__(self, target: RedisTarget, settings: Settings) -> None:
        url = target.url
        password = target.password()
        if password:
            SECRETS.add(password)
        self.max_size = settings.pool_max_connections
        self._pool = aioredis.BlockingConnectionPool(
            host=url.host,
            port=url.port,
            db=url.db,
            username=url.username,
            password=password,
            max_connections=self.max_size,
            timeout=settings.connect_timeout,
            socket_timeout=settings.statement_timeout,
            socket_connect_timeout=settings.connect_timeout,
            # an ACL user limited to INFO and PING cannot run CLIENT SETINFO/SETNAME, nor the
            # CLIENT MAINT_NOTIFICATIONS handshake redis-py sends by default over RESP3: a
            # refusal costs a round trip on every new connection and, where the server checks
            # the ACL before the subcommand (Redis 6.2), an entry in its ACL LOG
            driver_info=None,
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
            retry=Retry(NoBackoff(), 0),
            parser_class=_BoundedParser,
            **({"connection_class": aioredis.SSLConnection} if url.tls else {}),
        )
        self.client = aioredis.Redis(connection_pool=self._pool, decode_responses=False)

    async def open(self) -> None:
        """Nothing to do: redis-py connects on first use."""

    async def close(self) -> None:
        await self.client.aclose()
        await self._pool.disconnect()

    def stats(self) -> PoolStats:
        # redis-py exposes no public counts; these private lists are stable since 4.2
        used = len(getattr(self._pool, "_in_use_connections", ()))
        idle = len(getattr(self._pool, "_available_connections", ()))
        return PoolStats(idle=idle, used=used, max=self.max_size)

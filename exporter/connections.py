"""The daemon's own small, bounded connection pools: the only place that sees real secrets.

Passwords are read at every (re)connect, never kept: a rotated password_file applies at the
next connection without a restart.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry

from exporter.compat import BoundedRESP3Parser
from exporter.config import Settings
from exporter.secrets import SECRETS
from exporter.targets import PgbouncerTarget, PostgresTarget, RedisTarget

APPLICATION_NAME = "tierwatch"


@dataclass(frozen=True, slots=True)
class PoolStats:
    idle: int
    used: int
    max: int


class ConnectError(Exception):
    """The attempt to connect failed; the message is one redacted line."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return SECRETS.scrub(text[0] if text else type(exc).__name__)


class _Connection(psycopg.AsyncConnection[Any]):
    """The pool's connections: a failed attempt releases its socket at once, and a query
    abandoned at the poll deadline never ties up a thread.

    psycopg keeps a failed attempt's libpq connection (and its socket) reachable from the
    raised exception's frames, in a cycle that only a full GC collects: a frozen server
    would see each timed-out attempt sit in authentication for authentication_timeout.
    Clearing the frames where the pool's attempt fails closes it now.
    """

    @classmethod
    async def connect(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().connect(*args, **kwargs)
        except BaseException as exc:
            traceback.clear_frames(exc.__traceback__)
            raise

    async def cancel_safe(self, *, timeout: float = 30.0) -> None:
        # psycopg calls this when a query's task is cancelled. Before libpq 17 the only
        # cancel is PQcancel, which psycopg runs in a thread that blocks until the server
        # answers: a frozen or vanished server would hold that thread (and psycopg_c the
        # GIL) for as long. Without it psycopg waits 5 s for the query to end and then
        # closes the connection; on PostgreSQL the statement_timeout set at connect ends
        # the query (PgBouncer answers its SHOW commands itself).
        if psycopg.capabilities.has_cancel_safe():
            await super().cancel_safe(timeout=timeout)


def _fresh_password(target: PostgresTarget | PgbouncerTarget | RedisTarget) -> str | None:
    password = target.password()
    if password:
        SECRETS.add(password)
    return password


class PgPool:
    """A psycopg pool for one PostgreSQL or PgBouncer target.

    It keeps the connection it opened, so steady-state polling opens no new sessions; it
    grows only when a poll asks (min_size 0), so nothing reconnects in the background.
    A pool with no connection at all (first poll, or the last one broke) is not asked to
    open one blind: psycopg_pool would let the poll wait out its timeout while its attempt
    fails. A direct connection is tried first, which fails in milliseconds on a refused
    port, an unknown host or "too many clients", with the server's reason; once it works,
    the pool opens its own. A frozen server still takes the timeout (or the poll deadline).
    PgBouncer's admin console speaks only the simple query protocol and allows no
    transactions: autocommit, and prepare_threshold=None so a repeated SHOW is never turned
    into a server-side prepared statement.
    """

    def __init__(
        self, target: PostgresTarget | PgbouncerTarget, settings: Settings, *, admin_console: bool
    ) -> None:
        self._target = target
        self._overrides: dict[str, Any] = {
            "application_name": APPLICATION_NAME,
            "connect_timeout": max(1, round(settings.connect_timeout)),
        }
        if not admin_console:
            # PgBouncer rejects the `options` startup parameter; PostgreSQL gets hard limits
            ms = int(settings.statement_timeout * 1000)
            self._overrides["options"] = f"-c statement_timeout={ms} -c lock_timeout={ms}"
        self.last_connect_error: str | None = None
        self._probing: asyncio.Future[None] | None = None
        self.max_size = settings.pool_max_connections
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo="",
            kwargs=self.connect_kwargs,  # called at every connect: the password is read fresh
            connection_class=_Connection,
            min_size=0,
            max_size=self.max_size,
            open=False,
            name=f"tierwatch:{target.name}",
            timeout=settings.connect_timeout,
            reconnect_timeout=0,
            num_workers=1,
        )

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs = self._target.dsn.reveal(password=_fresh_password(self._target), **self._overrides)
        kwargs.update(autocommit=True, prepare_threshold=None, row_factory=dict_row)
        return kwargs

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A connection from the pool; ConnectError at once if the server cannot be reached."""
        if self.pool.get_stats().get("pool_size", 0) == 0:
            await self._probe()
        conn = await self.pool.getconn()
        try:
            yield conn
        finally:
            await self.pool.putconn(conn)

    async def _probe(self) -> None:
        # The attempt runs as a task of its own that the poll's deadline does not cancel: an
        # attempt cancelled mid-handshake would leave its socket open to a frozen server.
        # It ends by connect_timeout, and later polls wait on the same attempt.
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._connect_once())
            self._probing.add_done_callback(_retrieved)
        await asyncio.shield(self._probing)

    async def _connect_once(self) -> None:
        try:
            conn = await _Connection.connect(**self.connect_kwargs())
        except Exception as exc:
            self.last_connect_error = first_line(exc)
            raise ConnectError(self.last_connect_error) from None
        self.last_connect_error = None
        await conn.close()

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
        await self.pool.close(timeout=1.0)

    def stats(self) -> PoolStats:
        s = self.pool.get_stats()
        size, available = s.get("pool_size", 0), s.get("pool_available", 0)
        return PoolStats(idle=available, used=max(0, size - available), max=self.max_size)


def _retrieved(task: asyncio.Future[None]) -> None:
    # a probe nobody waits for any more (its poll ran into the deadline) still ends with
    # a result; retrieving it keeps asyncio from warning about it
    if not task.cancelled():
        task.exception()


class _PasswordFile(CredentialProvider):
    """Redis credentials, the password read at every connect (a rotated file applies)."""

    def __init__(self, target: RedisTarget) -> None:
        self._target = target

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        password = _fresh_password(self._target) or ""
        username = self._target.url.username
        return (username, password) if username else (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        # what the asyncio client calls; the base class's version logs a warning
        return self.get_credentials()


class RedisClient:
    """One redis-py asyncio client with a small blocking pool for one Redis target."""

    def __init__(self, target: RedisTarget, settings: Settings) -> None:
        url = target.url
        self.max_size = settings.pool_max_connections
        auth = target.password_file is not None or url.password or url.username
        self._pool = aioredis.BlockingConnectionPool(
            host=url.host,
            port=url.port,
            db=url.db,
            credential_provider=_PasswordFile(target) if auth else None,
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
            parser_class=BoundedRESP3Parser,
            connection_class=aioredis.SSLConnection if url.tls else aioredis.Connection,
        )
        self.client = aioredis.Redis(connection_pool=self._pool, decode_responses=False)

    async def open(self) -> None:
        """Nothing to do: redis-py connects on first use."""

    async def close(self) -> None:
        await self.client.aclose()
        await self._pool.disconnect()

    def stats(self) -> PoolStats:
        counts = {"idle": 0, "used": 0}
        for count, attributes in self._pool.get_connection_count():
            for value in attributes.values():
                if value in counts:
                    counts[value] += count
        return PoolStats(idle=counts["idle"], used=counts["used"], max=self.max_size)

"""A demo workload: a small read-heavy app driving the local data tier so every panel has data.

What it does, the way a real read-heavy backend does it:

- **cache-aside reads** (most traffic): ``GET item:<id>`` in Redis; on a miss the row is read
  from the **replica** (direct connection) and cached with ``SET ... EX <ttl>`` (TTLs of
  30-120 s, so keys also expire). A hot 10 % of the ids gets 90 % of the reads, so the hit
  ratio settles around 90 % once the cache is warm.
- **writes through PgBouncer to the primary** (transaction pooling, so psycopg runs with
  ``prepare_threshold=None``): mostly ``UPDATE`` of any item, sometimes ``INSERT``; after the
  commit the cached key is invalidated with ``DEL``.
- knob **cache pressure**: writes large values (~100 KiB, no TTL) to Redis, pushing it past
  its ``maxmemory`` so it evicts keys (the hot items too: the hit ratio drops).
- knob **pool flood**: holds more concurrent PgBouncer transactions (``pg_sleep``) than the
  pool has server connections, so clients queue (``cl_waiting``, ``maxwait``); the app's own
  writes wait in that queue too.

Safety: every loop is paced and bounded by ``--duration`` (or a stop request); it only ever
connects to loopback addresses (anything else is refused); SIGINT/SIGTERM stop it cleanly and
it removes the large cache-pressure values it wrote.

Command line (the addresses come from the environment so passwords stay out of ``ps``)::

    WORKLOAD_PGBOUNCER_DSN=postgresql://app:PW@127.0.0.1:6432/app \\
    WORKLOAD_REPLICA_DSN=postgresql://app:PW@127.0.0.1:5433/app \\
    WORKLOAD_REDIS_URL=redis://127.0.0.1:6379/0 \\
    python scripts/workload.py --duration 300 --rate 60 --cache-pressure --pool-flood \\
        --burst-every 120 --burst-length 30

Without ``--burst-every`` the knobs given stay on for the whole run; with it they are on for
the last ``--burst-length`` seconds of every period (a run starts calm). From Python::

    wl = Workload(Endpoints.from_topology(topo), rate=60).start()
    wl.set_knobs(cache_pressure=True, pool_flood=True)
    ...
    wl.stop()
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import random
import signal
import string
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict

KEY_PREFIX = "tw:item:"
BALLAST_PREFIX = "tw:ballast:"
SEED_ITEMS = 1000
HOT_FRACTION = 0.1  # the hot ids ...
HOT_SHARE = 0.9  # ... get this share of the reads
WRITE_SHARE = 0.1  # of all operations
INSERT_SHARE = 0.2  # of the writes
TTL_RANGE = (30, 120)  # seconds
BALLAST_BYTES = 100 * 1024
BALLAST_PER_SECOND = 30  # ~3 MiB/s: a 16 MiB cache is full within seconds
FLOOD_HOLD_SECONDS = 1.0
CONNECT_TIMEOUT = 5
ERROR_BACKOFF = 0.5


class WorkloadError(RuntimeError):
    pass


def _loopback(host: str | None, what: str) -> None:
    if host in (None, "", "localhost"):
        return  # None/"" would be a Unix socket on this machine: local too
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise WorkloadError(f"{what}: host {host!r} is not a loopback address; "
                        "the demo workload only talks to 127.0.0.1")


@dataclass(frozen=True)
class Endpoints:
    """Where the app connects. Hosts must be loopback addresses."""

    writes_dsn: str  # PgBouncer (transaction pooling) in front of the primary
    reads_dsn: str  # the replica, direct
    redis_url: str

    def __post_init__(self) -> None:
        for name in ("writes_dsn", "reads_dsn"):
            value = getattr(self, name)
            try:
                host = conninfo_to_dict(value).get("host")
            except psycopg.ProgrammingError:
                raise WorkloadError(f"{name}: not a valid PostgreSQL address") from None
            for one in str(host or "").split(","):
                _loopback(one, name)
        _loopback(urlsplit(self.redis_url).hostname, "redis_url")

    @classmethod
    def from_topology(cls, topo: Any) -> Self:
        """The app's addresses in a ``tests.topology.Topology``."""
        replica = topo.replica
        return cls(
            writes_dsn=topo.app_dsn_via_pgbouncer(),
            reads_dsn=f"postgresql://app:{topo.app_password}@{replica.host}:{replica.port}/app",
            redis_url=topo.redis_url(),
        )

    @classmethod
    def from_env(cls) -> Self:
        names = ("WORKLOAD_PGBOUNCER_DSN", "WORKLOAD_REPLICA_DSN", "WORKLOAD_REDIS_URL")
        missing = [n for n in names if not os.environ.get(n)]
        if missing:
            raise WorkloadError(f"set {', '.join(missing)} (see --help)")
        return cls(*(os.environ[n] for n in names))


class _Pacer:
    """Sleeps so that calls to `tick` happen `rate` times a second; never bursts to catch up."""

    def __init__(self, rate: float, stop: threading.Event) -> None:
        self.period = 1.0 / rate if rate > 0 else 1.0
        self.stop = stop
        self.next = time.monotonic()

    def tick(self) -> bool:
        """Waits for the next slot; False when the workload is stopping."""
        self.next += self.period
        delay = self.next - time.monotonic()
        if delay < -self.period:
            self.next = time.monotonic()  # fell behind (a slow query): restart the schedule
        elif delay > 0 and self.stop.wait(delay):
            return False
        return not self.stop.is_set()


def _payload(rng: random.Random, size: int = 200) -> str:
    return "".join(rng.choices(string.ascii_letters, k=size))


class Workload:
    """The app as a handful of threads; `start()`, `set_knobs(...)`, `stop()`."""

    def __init__(
        self,
        endpoints: Endpoints,
        rate: float = 60.0,
        readers: int = 3,
        flood_clients: int = 8,
        seed: int | None = None,
    ) -> None:
        if rate <= 0:
            raise WorkloadError("rate must be positive")
        self.endpoints = endpoints
        self.rate = rate
        self.readers = readers
        self.flood_clients = flood_clients
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._cache_pressure = threading.Event()
        self._pool_flood = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rng = random.Random(seed)
        self._max_id = 0
        self._redis = redis.Redis.from_url(endpoints.redis_url, socket_timeout=5,
                                           socket_connect_timeout=CONNECT_TIMEOUT)

    # -- control

    def start(self) -> Self:
        self._seed()
        jobs: list[tuple[str, Callable[[random.Random], None]]] = [
            (f"reader-{i}", self._reader) for i in range(self.readers)
        ]
        jobs += [("writer", self._writer), ("cache-pressure", self._ballast)]
        jobs += [(f"flood-{i}", self._flooder) for i in range(self.flood_clients)]
        for name, target in jobs:
            rng = random.Random(self._rng.random())
            thread = threading.Thread(target=target, args=(rng,), name=f"workload-{name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def set_knobs(self, cache_pressure: bool | None = None,
                  pool_flood: bool | None = None) -> None:
        for event, on in ((self._cache_pressure, cache_pressure), (self._pool_flood, pool_flood)):
            if on is True:
                event.set()
            elif on is False:
                event.clear()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._cache_pressure.clear()
        self._pool_flood.clear()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(redis.RedisError, OSError):
            self._drop_ballast()  # best effort: leave the cache as we found it
        self._redis.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> str:
        with self._stats_lock:
            s = dict(self.stats)
        lookups = s.get("cache_hits", 0) + s.get("cache_misses", 0)
        ratio = f"{100 * s.get('cache_hits', 0) / lookups:.0f}%" if lookups else "-"
        return (f"reads {lookups} (cache hits {ratio}), writes {s.get('writes', 0)}, "
                f"ballast {s.get('ballast', 0)}, flood tx {s.get('flood_tx', 0)}, "
                f"errors {s.get('errors', 0)}")

    # -- helpers

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    def _writes_conn(self) -> psycopg.Connection[Any]:
        # PgBouncer transaction pooling: no server-side prepared statements.
        return psycopg.connect(self.endpoints.writes_dsn, connect_timeout=CONNECT_TIMEOUT,
                               prepare_threshold=None, application_name="tierwatch-workload")

    def _reads_conn(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.endpoints.reads_dsn, connect_timeout=CONNECT_TIMEOUT,
                               autocommit=True, application_name="tierwatch-workload-reader")

    def _failed(self, conn: psycopg.Connection[Any] | None) -> None:
        self._count("errors")
        if conn is not None:
            conn.close()
        self._stop.wait(ERROR_BACKOFF)

    def _seed(self) -> None:
        with self._writes_conn() as conn:
            have = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM items").fetchone()
            assert have is not None
            if have[0] < SEED_ITEMS:
                conn.execute("INSERT INTO items (payload) "
                             "SELECT md5(g::text) FROM generate_series(1, %s) AS g",
                             (SEED_ITEMS - have[0],))
            row = conn.execute("SELECT max(id) FROM items").fetchone()
            conn.commit()
        self._max_id = int(row[0]) if row and row[0] else SEED_ITEMS

    def _pick_id(self, rng: random.Random) -> int:
        top = max(self._max_id, 1)
        hot = max(int(top * HOT_FRACTION), 1)
        return rng.randint(1, hot) if rng.random() < HOT_SHARE else rng.randint(1, top)

    # -- the threads

    def _reader(self, rng: random.Random) -> None:
        pacer = _Pacer(self.rate * (1 - WRITE_SHARE) / max(self.readers, 1), self._stop)
        conn: psycopg.Connection[Any] | None = None
        while pacer.tick():
            item = self._pick_id(rng)
            key = f"{KEY_PREFIX}{item}"
            try:
                if self._redis.get(key) is not None:
                    self._count("cache_hits")
                    continue
                self._count("cache_misses")
                if conn is None or conn.closed:
                    conn = self._reads_conn()
                row = conn.execute("SELECT payload FROM items WHERE id = %s", (item,)).fetchone()
                if row is not None:
                    self._redis.set(key, row[0], ex=rng.randint(*TTL_RANGE))
            except (psycopg.Error, redis.RedisError, OSError):
                self._failed(conn)
                conn = None
        if conn is not None:
            conn.close()

    def _writer(self, rng: random.Random) -> None:
        pacer = _Pacer(self.rate * WRITE_SHARE, self._stop)
        conn: psycopg.Connection[Any] | None = None
        while pacer.tick():
            try:
                if conn is None or conn.closed:
                    conn = self._writes_conn()
                with conn.transaction():
                    if rng.random() < INSERT_SHARE:
                        row = conn.execute("INSERT INTO items (payload) VALUES (%s) RETURNING id",
                                           (_payload(rng),)).fetchone()
                        item = int(row[0]) if row else 0
                        self._max_id = max(self._max_id, item)
                    else:
                        item = rng.randint(1, max(self._max_id, 1))
                        conn.execute("UPDATE items SET payload = %s WHERE id = %s",
                                     (_payload(rng), item))
                self._redis.delete(f"{KEY_PREFIX}{item}")  # invalidate after the commit
                self._count("writes")
            except (psycopg.Error, redis.RedisError, OSError):
                self._failed(conn)
                conn = None
        if conn is not None:
            conn.close()

    def _ballast(self, rng: random.Random) -> None:
        serial = 0
        while not self._stop.is_set():
            if not self._cache_pressure.wait(0.5):
                continue
            pacer = _Pacer(BALLAST_PER_SECOND, self._stop)
            while self._cache_pressure.is_set() and pacer.tick():
                serial += 1
                try:
                    self._redis.set(f"{BALLAST_PREFIX}{serial}", rng.randbytes(BALLAST_BYTES))
                    self._count("ballast")
                except (redis.RedisError, OSError):
                    self._failed(None)

    def _drop_ballast(self) -> None:
        batch: list[bytes] = []
        for key in self._redis.scan_iter(match=f"{BALLAST_PREFIX}*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                self._redis.delete(*batch)
                batch.clear()
        if batch:
            self._redis.delete(*batch)

    def _flooder(self, rng: random.Random) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            if not self._pool_flood.is_set():
                if conn is not None:
                    conn.close()
                    conn = None
                self._pool_flood.wait(0.5)
                continue
            try:
                if conn is None or conn.closed:
                    conn = self._writes_conn()
                with conn.transaction():  # holds a server connection for the whole sleep
                    conn.execute("SELECT pg_sleep(%s)",
                                 (FLOOD_HOLD_SECONDS * rng.uniform(0.8, 1.2),))
                self._count("flood_tx")
            except (psycopg.Error, OSError):
                self._failed(conn)
                conn = None
        if conn is not None:
            conn.close()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python scripts/workload.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300.0,
                        help="seconds to run before stopping by itself (default 300)")
    parser.add_argument("--rate", type=float, default=60.0,
                        help="app operations per second, reads + writes (default 60)")
    parser.add_argument("--cache-pressure", action="store_true",
                        help="write large values to push Redis past maxmemory (evictions)")
    parser.add_argument("--pool-flood", action="store_true",
                        help="hold more PgBouncer transactions than the pool (clients wait)")
    parser.add_argument("--flood-clients", type=int, default=8,
                        help="concurrent transactions held by --pool-flood (default 8)")
    parser.add_argument("--burst-every", type=float, default=0.0,
                        help="turn the knobs on only for the last --burst-length s of every "
                        "period of this many seconds")
    parser.add_argument("--burst-length", type=float, default=30.0)
    parser.add_argument("--report-every", type=float, default=30.0,
                        help="seconds between progress lines on stderr (0: none)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the parent process goes away (used by make demo)")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rate <= 0:
        parser.error("--duration and --rate must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        workload = Workload(Endpoints.from_env(), rate=args.rate,
                            flood_clients=args.flood_clients).start()
    except (WorkloadError, psycopg.Error, redis.RedisError) as exc:
        print(f"workload: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()  # the loop below does the stopping

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    parent = os.getppid()
    began = now = time.monotonic()
    last_report = began
    try:
        while not stop.is_set() and now - began < args.duration:
            if args.exit_with_parent and os.getppid() != parent:
                break
            on = True
            if args.burst_every > 0:
                on = (now - began) % args.burst_every >= args.burst_every - args.burst_length
            workload.set_knobs(cache_pressure=args.cache_pressure and on,
                               pool_flood=args.pool_flood and on)
            if args.report_every and now - last_report >= args.report_every:
                print(f"workload: {workload.summary()}", file=sys.stderr, flush=True)
                last_report = now
            stop.wait(0.5)
            now = time.monotonic()
    finally:
        workload.stop()
    print(f"workload: done: {workload.summary()}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

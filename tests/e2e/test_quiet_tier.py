"""A quiet tier stays quiet, and a connection storm is seen: one real stack, two phases.

The stack: the real topology (tests/topology.py), tierwatch polling it every second as a
child process, the demo workload (scripts/workload.py) and a real Prometheus scraping
tierwatch every second with the shipped rule files, evaluated every second.

1. **Quiet** (issue 15, point 7): the healthy tier under the workload, plus a *pooled*
   application that opens a connection to PgBouncer for every query (>= 30 queries/s), for
   two minutes. No alert may be pending or firing at any evaluation, no rule may fail to
   evaluate, and PostgreSQL must see no connection storm: PgBouncer absorbs it.
2. **Storm** (point 5): an application that opens and closes a connection to PostgreSQL
   itself for every query, at the same rate: TierwatchPostgresConnectionStorm fires.

Measured here: the pooled application ran 40.0 queries/s and PostgreSQL saw at most 0.01 new
sessions/s; the unpooled one 40.0 connections/s, all counted, and the storm alert fired 41 s
after it began. The module takes about 3 minutes.

The recording rules are the shipped file. The alerting rules are the shipped file with every
`for:` scaled from minutes to 2 s per minute, as in test_alerts_e2e.py, so the storm fires
within the test's budget. That leaves the quiet check exactly as strict as with the shipped
file: an alert is *pending* from the first evaluation its condition is true, whatever its
`for:`, and pending counts as a failure here. Windows (`[5m]`, `[2m]`, ...) are unchanged.

"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis

from scripts.workload import Endpoints, Workload
from tests.e2e.test_alerts_e2e import scaled_rules
from tests.promstack import Prometheus
from tests.support import DaemonProcess, wait_until
from tests.topology import Topology

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Prometheus.available(), reason="prometheus not installed"),
]

QUIET_SECONDS = 120.0
APP_RATE = 40.0  # queries per second of the pooled and the unpooled application
MIN_RATE = 30.0  # what the issue asks for, measured on the application's side
WARM_HIT_RATIO = 0.85  # the cache's hit ratio over a few seconds before Prometheus starts


class ConnectPerQuery:
    """An application that opens a connection, runs one query and closes it, `rate` times a
    second, on a thread of its own. Counts what it managed."""

    def __init__(self, dsn: str, rate: float) -> None:
        self.dsn = dsn
        self.period = 1.0 / rate
        self.done = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = self.stopped = 0.0

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                # prepare_threshold=None: PgBouncer's transaction pooling has no prepared
                # statements; harmless for a direct connection
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5,
                                     prepare_threshold=None) as conn:
                    conn.execute("SELECT 1").fetchone()
                self.done += 1
            except psycopg.Error:
                self.errors += 1
            due += self.period
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -1.0:
                due = time.monotonic()  # fell behind: never burst to catch up

    def __enter__(self) -> ConnectPerQuery:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.stopped = time.monotonic()

    def rate(self) -> float:
        end = self.stopped or time.monotonic()
        return self.done / max(end - self.started, 1e-9)


@dataclass
class Stack:
    topology: Topology
    prometheus: Prometheus
    workload: Workload


def _hit_ratio_over(client: redis.Redis, seconds: float) -> float:
    def counts() -> tuple[int, int]:
        stats: dict[str, Any] = client.info("stats")
        return int(stats["keyspace_hits"]), int(stats["keyspace_misses"])

    hits0, misses0 = counts()
    time.sleep(seconds)
    hits1, misses1 = counts()
    lookups = (hits1 - hits0) + (misses1 - misses0)
    return (hits1 - hits0) / lookups if lookups else 0.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    rules = scaled_rules(tmp_path_factory.mktemp("rules"))
    with Topology() as topo:
        daemon = DaemonProcess(topo.tierwatch_config(poll_interval=1.0))
        try:
            daemon.start()
            with Workload(Endpoints.from_topology(topo), rate=60, seed=15) as workload:
                # A cold cache misses by design: TierwatchRedisCacheHitRatioLow would rightly
                # be pending. A healthy tier is a warm one; wait for it before Prometheus.
                cache = redis.Redis.from_url(topo.redis_url())
                wait_until(lambda: _hit_ratio_over(cache, 3.0) >= WARM_HIT_RATIO, 90,
                           f"the demo cache warm (hit ratio >= {WARM_HIT_RATIO})", interval=0)
                with Prometheus([f"127.0.0.1:{daemon.port}"], scrape_interval="1s",
                                rule_files=rules, evaluation_interval="1s") as prom:
                    wait_until(prom.targets_up, 30, "Prometheus scraping tierwatch")
                    yield Stack(topo, prom, workload)
        finally:
            daemon.stop()


def _alerts_between(prom: Prometheus, start: float, end: float) -> list[str]:
    series = prom.query_range('ALERTS{alertname=~"Tierwatch.*"}', start, end, step=1)
    return sorted({f"{s['metric']['alertname']} {s['metric'].get('alertstate')} "
                   f"{s['metric'].get('cluster', '')}/{s['metric'].get('target', '')}"
                   for s in series})


def _rule_errors(prom: Prometheus) -> list[str]:
    return [f"{rule['name']}: {rule.get('lastError')}"
            for group in prom.api("rules")["groups"] for rule in group["rules"]
            if rule.get("health") != "ok"]


def _value(prom: Prometheus, expr: str) -> float | None:
    result = prom.query(expr)
    return float(result[0]["value"][1]) if result else None


def _wait_evaluated(prom: Prometheus, expr: str, what: str) -> None:
    wait_until(lambda: prom.query(expr), 60, what, interval=0.5)


def test_quiet_tier_then_a_connection_storm(stack: Stack) -> None:
    topo, prom = stack.topology, stack.prometheus
    # the rules really evaluate: thresholds loaded, the SLI and the connection rate recorded
    _wait_evaluated(prom, "count({__name__=~'tierwatch:threshold:.+'}) == 23",
                    "all 23 threshold series")
    _wait_evaluated(prom, 'tierwatch:pg_replica_fresh{target="replica-1"} == 1',
                    "the replica-freshness SLI of the replica")
    _wait_evaluated(prom, 'tierwatch:pg_sessions:rate2m{target="primary"}',
                    "the primary's connection rate")

    # 1. quiet: the workload plus a pooled application connecting to PgBouncer per query
    started = time.time()
    with ConnectPerQuery(topo.app_dsn_via_pgbouncer(), APP_RATE) as pooled:
        deadline = time.monotonic() + QUIET_SECONDS
        while time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            early = _alerts_between(prom, started, time.time())
            assert not early, (f"alerts on a healthy tier after {time.time() - started:.0f}s: "
                               f"{early}; workload: {stack.workload.summary()}")
    ended = time.time()
    time.sleep(2)  # the last evaluations of the window are written
    assert pooled.rate() >= MIN_RATE, f"pooled app only {pooled.rate():.1f} queries/s"
    assert pooled.errors == 0, f"{pooled.errors} pooled connections failed"
    assert _alerts_between(prom, started, ended) == []
    assert _rule_errors(prom) == []
    storm_threshold = _value(prom, "tierwatch:threshold:pg_sessions_per_second")
    assert storm_threshold is not None
    quiet_rate = _value(prom, 'max_over_time(tierwatch:pg_sessions:rate2m{target="primary"}'
                        f'[{int(ended - started)}s])')
    assert quiet_rate is not None and quiet_rate < storm_threshold / 5, (
        f"PostgreSQL saw {quiet_rate} sessions/s behind PgBouncer")

    # 2. storm: the same query rate, each query on a new connection to PostgreSQL itself
    direct = f"postgresql://app:{topo.app_password}@{topo.primary.host}:{topo.primary.port}/app"
    storm_started = time.time()
    with ConnectPerQuery(direct, APP_RATE) as unpooled:
        firing: Callable[[], list[dict[str, Any]]] = lambda: prom.query(  # noqa: E731
            'ALERTS{alertname="TierwatchPostgresConnectionStorm", alertstate="firing", '
            'cluster="main", target="primary"}')
        wait_until(firing, 120, "TierwatchPostgresConnectionStorm firing for main/primary",
                   interval=1)
        fired_after = time.time() - storm_started
        # what PostgreSQL counted over the last 30 s: the application's connections, all
        storm_rate = _value(prom, 'sum(rate(tierwatch_pg_sessions_total{target="primary"}[30s]))')
    assert unpooled.rate() >= MIN_RATE, f"unpooled app only {unpooled.rate():.1f} queries/s"
    assert storm_rate is not None and storm_rate >= 0.8 * unpooled.rate(), (
        f"PostgreSQL counted {storm_rate} sessions/s, the app opened {unpooled.rate():.1f}/s")
    # Not asserted: on a loaded 2-core machine, 40 forks and SCRAM logins a second can make
    # a 1 s poll of the primary miss its 0.8 s deadline twice in a row, which the scaled
    # `for:` (2 s) turns into TierwatchTargetDown. Shown for the record.
    others = [a for a in _alerts_between(prom, storm_started, time.time())
              if not a.startswith("TierwatchPostgresConnectionStorm ")]
    print(f"\npooled {pooled.rate():.1f} q/s -> PostgreSQL max {quiet_rate:.2f} sessions/s; "
          f"unpooled {unpooled.rate():.1f} q/s -> {storm_rate:.1f} sessions/s, fired after "
          f"{fired_after:.0f}s; other alerts meanwhile: {others or 'none'}")


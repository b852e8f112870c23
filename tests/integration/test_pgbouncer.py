"""PgBouncer against the real topology: a saturated pool, recovery, and a restart underneath.

The daemon runs as a child process polling every second; values are read from its /metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest
import yaml

from tests.support import DaemonProcess, Scrape, wait_until
from tests.topology import Topology

INTERVAL = 1.0
POOL = {"cluster": "main", "target": "bouncer", "database": "app", "user": "app"}
BOUNCER = {"cluster": "main", "target": "bouncer"}


def bouncer_only(topo: Topology) -> str:
    doc = yaml.safe_load(topo.tierwatch_config(poll_interval=INTERVAL))
    for cluster in doc["clusters"]:
        cluster.pop("postgres", None)
        cluster.pop("redis", None)
    return yaml.safe_dump(doc)


def app_connection(topo: Topology, autocommit: bool) -> psycopg.Connection:
    # transaction pooling carries no prepared statements (DESIGN §8)
    return psycopg.connect(topo.app_dsn_via_pgbouncer(), prepare_threshold=None,
                           autocommit=autocommit, connect_timeout=5)


@contextmanager
def saturated_pool(topo: Topology, waiting: int) -> Iterator[list[threading.Thread]]:
    """Holds both server connections of the `app` pool (default_pool_size 2) in open
    transactions and queues `waiting` more clients behind them; releases on exit."""
    holders = []
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []
    try:
        for _ in range(2):
            conn = app_connection(topo, autocommit=False)
            conn.execute("SELECT pg_sleep(0.05)")  # the transaction stays open: server held
            holders.append(conn)

        def queue() -> None:
            try:
                with app_connection(topo, autocommit=True) as conn:
                    conn.execute("SELECT 1")  # waits for a server until the holders let go
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=queue, daemon=True) for _ in range(waiting)]
        for thread in threads:
            thread.start()
        yield threads
    finally:
        for conn in holders:
            conn.rollback()
            conn.close()
        for thread in threads:
            thread.join(timeout=10)
    assert not errors, errors


def value_of(daemon: DaemonProcess, name: str, **labels: str) -> float | None:
    return daemon.scrape().value(name, **labels)


def test_saturated_pool_shows_waiting_clients_and_recovers(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    with app_connection(topology, autocommit=True) as conn:  # pools are created lazily
        conn.execute("SELECT 1")
    daemon = daemon_factory(bouncer_only(topology))

    def baseline() -> Scrape | None:
        scrape = daemon.scrape()
        ok = (scrape.value("tierwatch_pgbouncer_clients", state="waiting", **POOL) == 0
              and scrape.value("tierwatch_pgbouncer_pool_saturation_ratio", **POOL) == 0)
        return scrape if ok else None

    before = wait_until(baseline, 5, "an idle app pool in the daemon's scrape")
    assert before.value("tierwatch_pgbouncer_pool_size", database="app", **BOUNCER) == 2
    assert before.value("tierwatch_pgbouncer_max_wait_seconds", **POOL) == 0
    assert before.value("tierwatch_pgbouncer_max_client_connections", **BOUNCER) == 50
    assert not before.find("tierwatch_pgbouncer_clients", database="pgbouncer")

    with saturated_pool(topology, waiting=3):
        queued_at = time.monotonic()

        def saturated() -> Scrape | None:
            scrape = daemon.scrape()
            ok = (scrape.value("tierwatch_pgbouncer_clients", state="waiting", **POOL) == 3
                  and (scrape.value("tierwatch_pgbouncer_pool_saturation_ratio", **POOL) or 0)
                  >= 1
                  and (scrape.value("tierwatch_pgbouncer_max_wait_seconds", **POOL) or 0) > 0)
            return scrape if ok else None

        during = wait_until(saturated, 2 * INTERVAL + 0.5,
                            "3 waiting clients, saturation >= 1 and max wait > 0")
        seen_after = time.monotonic() - queued_at
        # 2 servers active + 3 clients waiting over a pool of 2
        assert during.value("tierwatch_pgbouncer_pool_saturation_ratio", **POOL) == 2.5
        assert during.value("tierwatch_pgbouncer_servers", state="active", **POOL) == 2
        assert during.value("tierwatch_pgbouncer_clients", state="active", **POOL) == 2
        # 5 app clients + the daemon's own console session at least
        assert (during.value("tierwatch_pgbouncer_client_connections", **BOUNCER) or 0) >= 6
        print(f"\nsaturation visible {seen_after:.2f}s after queueing; max wait "
              f"{during.value('tierwatch_pgbouncer_max_wait_seconds', **POOL):.3f}s")

    after = wait_until(baseline, 2 * INTERVAL + 0.5, "the app pool back at baseline")
    assert after.value("tierwatch_pgbouncer_max_wait_seconds", **POOL) == 0
    # the waits were counted when the queued clients finally got a server
    waited = after.value("tierwatch_pgbouncer_wait_seconds_total", database="app", **BOUNCER)
    assert waited is not None and waited > (
        before.value("tierwatch_pgbouncer_wait_seconds_total", database="app", **BOUNCER) or 0)
    # past psycopg's prepare threshold of 5 runs on the same console session, still fine
    final = wait_until(
        lambda: ((s := daemon.scrape()).value("tierwatch_poll_duration_seconds_count",
                                              **BOUNCER) or 0) >= 7 and s,
        8 * INTERVAL, "7 polls of the bouncer")
    assert final.value("tierwatch_up", **BOUNCER) == 1
    assert final.value("tierwatch_poll_errors_total", **BOUNCER) == 0
    for collector in ("pgbouncer_pools", "pgbouncer_stats", "pgbouncer_lists"):
        assert final.value("tierwatch_collector_success", collector=collector, **BOUNCER) == 1


def test_restart_under_the_daemon_goes_down_and_comes_back(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    daemon = daemon_factory(bouncer_only(topology))
    wait_until(lambda: value_of(daemon, "tierwatch_up", **BOUNCER) == 1, 5, "bouncer up")
    try:
        topology.pgbouncer.stop()
        down = wait_until(
            lambda: (s := daemon.scrape()).value("tierwatch_up", **BOUNCER) == 0 and s,
            3 * INTERVAL + 3, "tierwatch_up 0 while PgBouncer is stopped")
        # a failed poll removes the target's series instead of freezing them
        assert not down.find("tierwatch_pgbouncer_pool_size", **BOUNCER)
    finally:
        topology.pgbouncer.start()
    up = wait_until(
        lambda: (s := daemon.scrape()).value("tierwatch_up", **BOUNCER) == 1 and s,
        3 * INTERVAL + 3, "tierwatch_up back to 1 after PgBouncer restarted")
    # lazy pools: right after the restart only the pool size is known, no app pool yet
    assert up.value("tierwatch_pgbouncer_pool_size", database="app", **BOUNCER) == 2
    assert not up.find("tierwatch_pgbouncer_clients", database="app", **BOUNCER)
    with app_connection(topology, autocommit=True) as conn:
        conn.execute("SELECT 1")
        wait_until(lambda: value_of(daemon, "tierwatch_pgbouncer_clients", state="active",
                                    **POOL) == 1, 2 * INTERVAL + 0.5, "the app pool reappearing")


@pytest.fixture(autouse=True)
def _pgbouncer_running(topology: Topology) -> Iterator[None]:
    yield
    if not topology.pgbouncer.is_running():  # leave the shared topology as found
        topology.pgbouncer.start()

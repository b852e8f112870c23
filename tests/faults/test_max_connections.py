"""PostgreSQL's connection slots all taken: a daemon without a connection yet cannot get
one. It reports the primary down with the server's reason, keeps its pool within bounds,
polls the rest on time, and recovers by itself once slots are free. A daemon that already
held its warm connection keeps polling throughout."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from tests.faults.faultkit import (
    INTERVAL,
    POOL_MAX,
    Watcher,
    check_fault,
    data_series,
    log_lines,
    pg_backends,
    recovered,
    settled,
)
from tests.support import DaemonProcess, wait_until
from tests.topology import Topology

HEALTHY = ("replica-1", "bouncer", "cache")
FULL = ("too many clients", "remaining connection slots are reserved")


def fill_slots(topo: Topology) -> list[psycopg.Connection[Any]]:
    """Ordinary (non-superuser) sessions on the primary until it refuses one more."""
    dsn = (f"postgresql://app:{topo.app_password}@{topo.primary.host}:{topo.primary.port}"
           "/app?application_name=filler")
    held: list[psycopg.Connection[Any]] = []
    for _ in range(100):
        try:
            held.append(psycopg.connect(dsn, connect_timeout=5))
        except psycopg.OperationalError as exc:
            assert any(reason in str(exc) for reason in FULL), exc
            return held
    raise AssertionError("the primary accepted 100 sessions: max_connections is not 50?")


def test_max_connections_reached(fault_topology: Topology, daemon: DaemonProcess) -> None:
    warm_daemon = daemon  # started before the slots fill, so it holds a connection
    wait_until(lambda: warm_daemon.scrape().value("tierwatch_up", target="primary") == 1, 10,
               "the warm daemon polling the primary")
    held = fill_slots(fault_topology)
    cold = DaemonProcess(fault_topology.tierwatch_config(poll_interval=INTERVAL))
    try:
        cold.start()  # ready once every target was polled, up or down
        with Watcher(cold) as watcher:
            watcher.wait(lambda s: settled(s, HEALTHY), 15, "the other targets up")
            started = time.time()
            time.sleep(4)
            ended = time.time()
            report = check_fault(watcher, started, ended, "primary", HEALTHY)
            # the warm daemon kept its session and its data all along
            warm = warm_daemon.scrape()
            assert warm.value("tierwatch_up", target="primary") == 1
            assert data_series(warm, "primary")
            for conn in held:
                conn.close()
            released = time.time()
            recovery = recovered(watcher, "primary", released)
        lines = [line for line in log_lines(cold, "primary") if "failed" in line]
        assert lines and any(reason in lines[0] for reason in FULL), lines
        assert any("is up again" in line for line in log_lines(cold, "primary"))
        assert "Traceback" not in cold.log_text()
        assert cold.proc is not None and cold.proc.poll() is None
        # both daemons together: at most a pool's worth of sessions each
        assert pg_backends(fault_topology, fault_topology.primary) <= 2 * POOL_MAX
    finally:
        for conn in held:
            conn.close()
        cold.stop()
    assert recovery <= INTERVAL + 2.0, recovery
    print(f"\nmax_connections: {len(held)} sessions filled the primary; a new daemon reports "
          f"{lines[0].split(': ', 1)[1]!r}; {report.failed_polls:g} failed polls of "
          f"{report.mean_failed_poll:.3f}s; recovered {recovery:.2f}s after the sessions "
          f"closed; the warm daemon stayed up")

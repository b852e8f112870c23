"""A server frozen with SIGSTOP accepts TCP and never answers: the poll is abandoned at its
deadline, the target reads down, the others go on, and after SIGCONT it recovers by itself
with no connection leaked."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import psycopg
import pytest

from exporter.config import load_settings
from exporter.connections import PgPool
from tests.faults.faultkit import (
    DEADLINE,
    INTERVAL,
    POOL_MAX,
    TARGETS,
    Watcher,
    all_up,
    check_fault,
    clean_after,
    daemon_fds,
    daemon_sockets,
    frozen,
    pool_total,
    print_log,
    recovered,
    server_of,
)
from tests.support import DaemonProcess
from tests.topology import Topology


@pytest.mark.parametrize("target", ["primary", "bouncer", "cache"])
def test_frozen_server(fault_topology: Topology, daemon: DaemonProcess, target: str) -> None:
    server = server_of(fault_topology, target)
    healthy = tuple(t for t in TARGETS if t != target)
    with Watcher(daemon) as watcher:
        all_up(watcher)
        fds_before = daemon_fds(daemon)
        started = time.time()
        with frozen(server):
            watcher.wait(lambda s: s.value("tierwatch_up", target=target) == 0,
                         DEADLINE + INTERVAL + 2, f"frozen {target} reported down")
            time.sleep(4)  # several polls run into the deadline
            sockets_frozen = daemon_sockets(daemon, server.port)
            ended = time.time()
        thawed = time.time()
        report = check_fault(watcher, started, ended, target, healthy)
        recovery = recovered(watcher, target, thawed)
        scrape = watcher.latest()
    sockets_after, lines = clean_after(daemon, fault_topology, server, target, fds_before)
    # every failed poll was abandoned at the deadline, not earlier, not later
    assert DEADLINE - 0.05 <= report.mean_failed_poll <= DEADLINE + 0.2, report
    assert report.down_after <= DEADLINE + INTERVAL + 0.5, report
    assert recovery <= INTERVAL + 2.0, recovery
    # bounded while frozen (pool connections, plus at most one cancel request each), no
    # leak after: the pool is back within its limit and holds no more sockets than that
    assert sockets_frozen <= 2 * POOL_MAX, sockets_frozen
    assert pool_total(scrape, target) <= POOL_MAX
    assert any("no answer within the poll deadline of 0.8s" in line for line in lines), lines
    print(f"\nfrozen {target}: down after {report.down_after:.2f}s, {report.failed_polls:g} "
          f"failed polls of {report.mean_failed_poll:.3f}s each, sockets while frozen "
          f"{sockets_frozen}, recovered {recovery:.2f}s after SIGCONT, sockets after "
          f"{sockets_after}, slowest of {report.scrapes} scrapes {report.slowest_ms:.1f} ms")
    print_log(lines)


def test_a_query_abandoned_on_a_frozen_server_holds_no_thread(
        fault_topology: Topology, tmp_path: Path) -> None:
    """Before libpq 17 psycopg cancels in a thread that blocks until the server answers;
    tierwatch's connections skip that cancel, so the abandoned query's task ends by itself
    (psycopg's 5 s wait, then it closes the connection) and no thread is left behind."""
    config = tmp_path / "tierwatch.yaml"
    config.write_text(fault_topology.tierwatch_config(poll_interval=INTERVAL))
    settings = load_settings(config)
    target = next(t for t in settings.clusters[0].postgres if t.name == "primary")

    async def abandon_while_frozen() -> tuple[float, bool, list[str]]:
        pool = PgPool(target, settings, admin_console=False)
        await pool.open()
        try:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")  # connected before the freeze
                with frozen(fault_topology.primary):
                    query = asyncio.create_task(conn.execute("SELECT 1"))
                    done, _ = await asyncio.wait({query}, timeout=DEADLINE)
                    assert not done, "a frozen server answered"
                    query.cancel()  # what the poller does to a poll past its deadline
                    started = time.monotonic()
                    await asyncio.wait({query}, timeout=15)
                    ended = time.monotonic() - started
                    workers = [t.name for t in threading.enumerate()
                               if t.name.startswith("asyncio_")]
                    return ended, conn.closed, workers
        finally:
            await pool.close()

    ended, closed, workers = asyncio.run(abandon_while_frozen())
    assert workers == [], f"threads left blocked on the frozen server: {workers}"
    if psycopg.capabilities.has_cancel_safe():  # libpq 17+: psycopg's non-blocking cancel
        assert ended <= 11.0, ended  # its 5 s timeout, then the same 5 s wait
    else:  # no cancel: psycopg's 5 s wait for the query, then the connection is closed
        assert 4.5 <= ended <= 6.0, ended
        assert closed
    print(f"\nlibpq {psycopg.pq.version()} ({psycopg.pq.__impl__}): abandoned query ended "
          f"{ended:.2f}s after its cancel, connection closed: {closed}")

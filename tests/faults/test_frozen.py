"""A server frozen with SIGSTOP accepts TCP and never answers: the poll is abandoned at its
deadline, the target reads down, the others go on, and after SIGCONT it recovers by itself
with no connection leaked."""

from __future__ import annotations

import time

import pytest

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

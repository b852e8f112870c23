"""A server SIGKILLed while a poll waits on it, then restarted on the same port: the target
reads down (first the deadline, then refused connections), the others go on, and it comes
back by itself with no connection leaked."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.faultkit import (
    DEADLINE,
    INTERVAL,
    TARGETS,
    Watcher,
    all_up,
    check_fault,
    clean_after,
    daemon_fds,
    frozen,
    print_log,
    recovered,
    server_of,
)
from tests.support import DaemonProcess
from tests.topology import Topology


@pytest.mark.parametrize("target", ["primary", "bouncer", "cache"])
def test_killed_mid_poll_then_restarted(
    fault_topology: Topology, daemon: DaemonProcess, target: str
) -> None:
    server = server_of(fault_topology, target)
    port = server.port
    healthy = tuple(t for t in TARGETS if t != target)
    with Watcher(daemon) as watcher:
        all_up(watcher)
        fds_before = daemon_fds(daemon)
        started = time.time()
        # Frozen first, so the kill lands while the daemon's queries are in flight: a poll
        # has run into its deadline and its cancellation, and the next poll, still wait.
        with frozen(server) as pids:
            watcher.wait(lambda s: s.value("tierwatch_up", target=target) == 0,
                         DEADLINE + INTERVAL + 2, f"frozen {target} reported down")
            time.sleep(0.5)
            # every process, as when the machine or its OOM killer takes the server: a
            # PostgreSQL backend outliving its SIGKILLed postmaster would answer one more
            # poll after SIGCONT before it notices, and the server would read up again
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
        time.sleep(3)  # nothing listens on the port now
        # the fault ends when the restart begins: the server may accept (and be polled)
        # before start() returns
        restarting = time.time()
        server.start()
        assert server.port == port
        restarted = time.time()
        report = check_fault(watcher, started, restarting, target, healthy)
        recovery = recovered(watcher, target, restarted)
    sockets_after, lines = clean_after(daemon, fault_topology, server, target, fds_before)
    assert recovery <= INTERVAL + 2.0, recovery
    assert any("poll of" in line and "failed" in line for line in lines), lines
    print(f"\nkilled {target}: down after {report.down_after:.2f}s, {report.failed_polls:g} "
          f"failed polls (mean {report.mean_failed_poll:.3f}s), recovered {recovery:.2f}s "
          f"after the restart, sockets after {sockets_after}, slowest of {report.scrapes} "
          f"scrapes {report.slowest_ms:.1f} ms")
    print_log(lines)

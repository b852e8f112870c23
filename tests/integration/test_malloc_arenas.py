"""The daemon answers concurrent scrapes from glibc's main arena alone (exporter/mallocarenas.py).

glibc's other arenas are the only 64 MiB-aligned anonymous regions of exactly 64 MiB in a
process's map (HEAP_MAX_SIZE on 64-bit: a used part, then its reserved rest), so they can be
counted from /proc/PID/maps of the real daemon.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Callable

import pytest

from exporter.mallocarenas import ENV_VAR, glibc_version
from tests.support import DaemonProcess, in_step
from tests.topology import Topology

pytestmark = pytest.mark.skipif(glibc_version() is None, reason="glibc only")

ARENA_BYTES = 64 << 20
SCRAPERS = 16


def extra_arenas(pid: int) -> int:
    """glibc arenas besides the main one in process `pid`."""
    anonymous: list[tuple[int, int]] = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) == 5:  # no path: not a file, [heap], [stack] and the like
                start, end = (int(x, 16) for x in fields[0].split("-"))
                anonymous.append((start, end))
    ends = {start: end for start, end in anonymous}
    count = 0
    for start, _ in anonymous:
        if start % ARENA_BYTES:
            continue
        end = start
        while end in ends and end - start < ARENA_BYTES:  # the used part, then the reserve
            end = ends[end]
        count += end - start == ARENA_BYTES
    return count


def scrape_concurrently(port: int, rounds: int = 20) -> None:
    """SCRAPERS keep-alive connections, each scraping in step: the server has a thread each."""
    def scraper(barrier: threading.Barrier) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for _ in range(rounds):
                barrier.wait()
                conn.request("GET", "/metrics")
                response = conn.getresponse()
                response.read()
                assert response.status == 200, response.status
        finally:
            conn.close()

    in_step(SCRAPERS, scraper)


@pytest.fixture
def config(topology: Topology) -> str:
    return topology.tierwatch_config(poll_interval=1.0)


def test_concurrent_scrapes_are_served_from_the_main_arena(
    config: str, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    if ENV_VAR in os.environ:
        pytest.skip(f"{ENV_VAR} is set for this test run: the daemon keeps it")
    daemon = daemon_factory(config)
    assert daemon.proc is not None
    scrape_concurrently(daemon.port)
    assert extra_arenas(daemon.proc.pid) == 0


def test_the_operators_arena_limit_is_kept(
    config: str, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    daemon = daemon_factory(config, env={ENV_VAR: "8"})
    assert daemon.proc is not None
    scrape_concurrently(daemon.port)
    assert extra_arenas(daemon.proc.pid) >= 2

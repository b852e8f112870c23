"""Targets that never work: a port where nothing listens, a host name that does not resolve,
and a server that answers random bytes — as PostgreSQL, PgBouncer and Redis targets alike.
Each reads down with its own clear log line, fails fast (or at the deadline, never later),
holds no connections, and the real targets beside them are polled on time."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from tests.faults.faultkit import (
    DEADLINE,
    INTERVAL,
    POOL_MAX,
    FaultReport,
    GarbageServer,
    Watcher,
    check_fault,
    daemon_fds,
    daemon_rss_mb,
    daemon_sockets,
    log_lines,
    recovered,
    settled,
)
from tests.support import DaemonProcess, free_port, wait_until
from tests.topology import Topology

HEALTHY = ("primary", "replica-1", "bouncer", "cache")
NXDOMAIN = "tierwatch-fault.invalid"  # RFC 6761: .invalid never resolves


@dataclass
class Setup:
    daemon: DaemonProcess
    refused: dict[str, int]  # kind -> a port where nothing listens
    garbage: dict[str, GarbageServer]  # target name -> the server behind it


def _target(kind: str, host: str, port: int, name: str) -> dict[str, str]:
    if kind == "redis":
        return {"name": name, "url": f"redis://{host}:{port}/0"}
    dbname = "pgbouncer" if kind == "pgbouncer" else "postgres"
    return {"name": name, "dsn": f"postgresql://monitor@{host}:{port}/{dbname}"}


PREFIX = {"postgres": "pg", "pgbouncer": "bouncer", "redis": "cache"}
# garbage from the first byte; and two that get further into the protocol first: "N" is
# PostgreSQL's "no TLS, go on" (libpq then parses random messages), and a RESP bulk header
# announcing 512 MiB followed by an endless stream of bytes
GARBAGE = {
    "pg-garbage": ("postgres", GarbageServer(seed=1)),
    "bouncer-garbage": ("pgbouncer", GarbageServer(seed=2)),
    "cache-garbage": ("redis", GarbageServer(seed=3)),
    "pg-garbage-after-n": ("postgres", GarbageServer(seed=4, prefix=b"N")),
    "cache-garbage-bulk": ("redis", GarbageServer(seed=5, prefix=b"$536870000\r\n",
                                                   burst=65536, stream=True)),
}


@pytest.fixture(scope="module")
def setup(fault_topology: Topology) -> Iterator[Setup]:
    config = yaml.safe_load(fault_topology.tierwatch_config(poll_interval=INTERVAL))
    refused = {kind: free_port() for kind in PREFIX}
    garbage = {name: server.__enter__() for name, (_, server) in GARBAGE.items()}
    cluster: dict[str, list[dict[str, str]] | str] = {"name": "faults"}
    for kind, prefix in PREFIX.items():
        cluster[kind] = [
            _target(kind, "127.0.0.1", refused[kind], f"{prefix}-refused"),
            _target(kind, NXDOMAIN, 5432 if kind != "redis" else 6379, f"{prefix}-nxdomain"),
        ]
    for name, (kind, server) in GARBAGE.items():
        cluster[kind].append(_target(kind, "127.0.0.1", server.port, name))  # type: ignore[union-attr]
    config["clusters"].append(cluster)
    daemon = DaemonProcess(yaml.safe_dump(config))
    try:
        daemon.start()
        yield Setup(daemon, refused, garbage)
    finally:
        daemon.stop()
        for server in garbage.values():
            server.close()


def watch(setup: Setup, names: tuple[str, ...], seconds: float = 4.0
          ) -> dict[str, FaultReport]:
    """Observe for `seconds` and run the common checks on each faulty target."""
    with Watcher(setup.daemon) as watcher:
        watcher.wait(lambda s: settled(s, HEALTHY), 20, "the real targets up")
        started = time.time()
        time.sleep(seconds)
        ended = time.time()
        return {name: check_fault(watcher, started, ended, name, HEALTHY) for name in names}


# libpq, past the "N", reads a random message length and waits for that many bytes: the
# attempt neither fails nor succeeds, like a frozen server's
WAITS_FOR_MORE = {"pg-garbage-after-n"}


def check_duration(name: str, report: FaultReport) -> None:
    """Every kind fails at once, with the attempt's own error: for SQL targets the pool's
    give-up ends the wait that psycopg_pool's getconn would otherwise sit out to its
    timeout (here the 0.8 s deadline). A server that keeps the attempt waiting fails at the
    deadline, never later."""
    if name in WAITS_FOR_MORE:
        assert report.mean_failed_poll <= DEADLINE + 0.1, (name, report)
    else:
        assert report.mean_failed_poll < 0.1, (name, report)


def outage_line(setup: Setup, name: str, report: FaultReport) -> str:
    """The target failed fast enough and logged its outage once (one line per outage,
    naming the cause); that line, printed."""
    check_duration(name, report)
    lines = [line for line in log_lines(setup.daemon, name) if "failed" in line]
    assert len(lines) == 1, lines
    print(f"\n{name}: {lines[0].split(': ', 1)[1]!r} "
          f"(polls fail in {report.mean_failed_poll * 1000:.1f} ms)")
    return lines[0]


def test_port_where_nothing_listens(setup: Setup) -> None:
    names = ("pg-refused", "bouncer-refused", "cache-refused")
    for name, report in watch(setup, names).items():
        line = outage_line(setup, name, report)
        assert "refused" in line.lower(), line


def test_nothing_listening_then_a_server_appears(setup: Setup) -> None:
    """Recovery without a restart: once something listens on the port, the target is up."""
    binary = shutil.which("redis-server")
    assert binary is not None
    port = setup.refused["redis"]
    with Watcher(setup.daemon) as watcher:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            started = time.time()
            recovery = recovered(watcher, "cache-refused", started)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        wait_until(lambda: watcher.latest().value("tierwatch_up", target="cache-refused") == 0,
                   5, "down again once the server is gone")
    assert recovery <= INTERVAL + 2.0
    print(f"\ncache-refused: up {recovery:.2f}s after a server started on the port")


def test_host_name_that_does_not_resolve(setup: Setup) -> None:
    names = ("pg-nxdomain", "bouncer-nxdomain", "cache-nxdomain")
    for name, report in watch(setup, names).items():
        line = outage_line(setup, name, report)
        assert NXDOMAIN in line or "resolve" in line or "name" in line.lower(), line


def test_server_answering_garbage(setup: Setup) -> None:
    fds_before = daemon_fds(setup.daemon)
    rss_before = daemon_rss_mb(setup.daemon)
    accepted_before = {name: g.accepted for name, g in setup.garbage.items()}
    seconds = 5.0
    reports = watch(setup, tuple(setup.garbage), seconds=seconds)
    for name, server in setup.garbage.items():
        report = reports[name]
        check_duration(name, report)
        # no retry storm: one connection attempt per poll, which libpq makes twice (TLS,
        # then without: sslmode=prefer) when the TLS answer is garbage
        accepted = server.accepted - accepted_before[name]
        assert accepted <= 2 * (seconds / INTERVAL + 2), (name, accepted)
        # the garbage server keeps its end open for 10 s: the daemon must have closed its own
        sockets = daemon_sockets(setup.daemon, server.port)
        assert sockets <= POOL_MAX, (name, sockets)
        lines = [line for line in log_lines(setup.daemon, name) if "failed" in line]
        assert lines, name
        print(f"\n{name}: {accepted} connections in {seconds:g} s, {sockets} open, polls fail "
              f"in {report.mean_failed_poll * 1000:.1f} ms; first log line: "
              f"{lines[0].split(': ', 1)[1]!r}")
    # the 512 MiB announcement is refused, not buffered
    assert any("bulk reply of 536870000 bytes refused" in line
               for line in log_lines(setup.daemon, "cache-garbage-bulk"))
    rss_after = daemon_rss_mb(setup.daemon)
    assert rss_after < rss_before + 20, (rss_before, rss_after)
    assert daemon_fds(setup.daemon) <= fds_before + 3
    assert "Traceback" not in setup.daemon.log_text()
    assert setup.daemon.proc is not None and setup.daemon.proc.poll() is None
    print(f"daemon RSS {rss_before:.1f} MB before, {rss_after:.1f} MB after")

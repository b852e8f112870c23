"""What every fault test needs: a scraper that times each /metrics request while the fault
lasts, the checks on its observations, ways to freeze a server, a garbage-speaking TCP
server, and counts of the daemon's connections as the servers and /proc see them."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support import DaemonProcess, Scrape, wait_until
from tests.topology import PgServer, Server, Topology, pids_under

INTERVAL = 1.0  # poll_interval of every daemon in the fault suite
DEADLINE = 0.8  # min(poll_timeout, 0.8 x interval)
SCRAPE_BUDGET_MS = 100.0
# a healthy target's last success may be this old when scraped: one interval, the jitter
# (0.1 s at 1 s), the poll itself and scheduling noise on a busy 2-core machine
ON_TIME_SECONDS = INTERVAL + 1.0
POOL_MAX = 2
# what stays in /metrics for a target whose poll failed (CONTRACT §4)
DAEMON_SERIES = ("tierwatch_up", "tierwatch_poll_", "tierwatch_last_poll_", "tierwatch_pool_")


# --------------------------------------------------------------------------- observing


@dataclass(frozen=True)
class Observation:
    at: float  # unix time the request started
    ms: float  # wall time of the HTTP request, body read included
    scrape: Scrape | None
    error: str | None = None


class Watcher:
    """Scrapes the daemon every `every` s from a thread and times each request."""

    def __init__(self, daemon: DaemonProcess, every: float = 0.2) -> None:
        self.url = daemon.url + "/metrics"
        self.every = every
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seen: list[Observation] = []
        self._thread = threading.Thread(target=self._run, name="fault-watcher", daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            at = time.time()
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    body = response.read()
                    status = response.status
                ms = (time.perf_counter() - t0) * 1000
                if status != 200:
                    obs = Observation(at, ms, None, f"HTTP {status}")
                else:
                    obs = Observation(at, ms, Scrape(body.decode()))  # parsed after timing
            except Exception as exc:
                obs = Observation(at, (time.perf_counter() - t0) * 1000, None, repr(exc))
            with self._lock:
                self._seen.append(obs)
            self._stop.wait(max(0.0, self.every - (time.perf_counter() - t0)))

    def since(self, start: float = 0.0) -> list[Observation]:
        with self._lock:
            return [o for o in self._seen if o.at >= start]

    def latest(self) -> Scrape:
        def last() -> Scrape | None:
            with self._lock:
                return next((o.scrape for o in reversed(self._seen) if o.scrape), None)

        return wait_until(last, 5, "a first scrape")

    def wait(self, pred: object, timeout: float, what: str) -> float:
        """Waits until pred(latest scrape) is true; returns the unix time it first was."""
        start = time.time()

        def check() -> float | None:
            for obs in self.since(start):
                if obs.scrape is not None and pred(obs.scrape):  # type: ignore[operator]
                    return obs.at
            return None

        return wait_until(check, timeout, what)


def data_series(scrape: Scrape, target: str) -> list[str]:
    """Names of the target's samples other than the daemon's own series about it."""
    return sorted({s.name for s in scrape.samples if s.labels.get("target") == target
                   and not s.name.startswith(DAEMON_SERIES)})


def pool_total(scrape: Scrape, target: str) -> float:
    return sum(s.value for s in scrape.find("tierwatch_pool_connections", target=target))


def histogram(scrape: Scrape, target: str) -> tuple[float, float]:
    """(count, sum) of the target's poll duration histogram."""
    count = scrape.value("tierwatch_poll_duration_seconds_count", target=target) or 0.0
    total = scrape.value("tierwatch_poll_duration_seconds_sum", target=target) or 0.0
    return count, total


@dataclass(frozen=True)
class FaultReport:
    """What the observations during a fault say; the numbers go into docs/reliability.md."""

    scrapes: int
    slowest_ms: float
    down_after: float  # seconds from the fault to the first up=0
    failed_polls: float
    mean_failed_poll: float  # seconds per failed poll, from the histogram


def check_fault(
    watcher: Watcher, started: float, ended: float, faulty: str, healthy: tuple[str, ...],
) -> FaultReport:
    """The common assertions over [started, ended]: every scrape answered within budget, the
    healthy targets were polled on time throughout, the faulty one went down, lost its data
    series, counted errors, stopped advancing its last success and kept its pool bounded."""
    seen = watcher.since(started - 0.5)
    during = [o for o in seen if started <= o.at <= ended]
    assert len(during) >= 5, f"only {len(during)} scrapes during the fault"
    errors = [o.error for o in seen if o.error]
    assert not errors, f"scrapes failed: {errors[:3]}"
    slow = [round(o.ms, 1) for o in seen if o.ms > SCRAPE_BUDGET_MS]
    assert not slow, f"scrapes over {SCRAPE_BUDGET_MS:g} ms: {slow}"
    for obs in during:
        scrape = obs.scrape
        assert scrape is not None
        for target in healthy:
            assert scrape.value("tierwatch_up", target=target) == 1, (target, obs.at - started)
            last = scrape.value("tierwatch_last_poll_success_timestamp_seconds", target=target)
            assert last is not None and obs.at - last <= ON_TIME_SECONDS, (
                f"{target} last polled {obs.at - (last or 0):.2f}s before a scrape "
                f"{obs.at - started:.1f}s into the fault")
        assert pool_total(scrape, faulty) <= POOL_MAX, (
            scrape.find("tierwatch_pool_connections", target=faulty))
    down = [o for o in during if o.scrape and o.scrape.value("tierwatch_up", target=faulty) == 0]
    assert down, f"{faulty} never reported down"
    first_down = down[0]
    # once down it stays down for the rest of the fault, without data series
    for obs in during[during.index(first_down):]:
        assert obs.scrape is not None
        assert obs.scrape.value("tierwatch_up", target=faulty) == 0, (
            f"{faulty} up again {obs.at - started:.2f}s into a fault of {ended - started:.2f}s")
        assert data_series(obs.scrape, faulty) == [], data_series(obs.scrape, faulty)
    first, last = down[0].scrape, down[-1].scrape
    assert first is not None and last is not None
    frozen_at = last.value("tierwatch_last_poll_success_timestamp_seconds", target=faulty)
    assert frozen_at == first.value("tierwatch_last_poll_success_timestamp_seconds",
                                    target=faulty)
    errors_grew = (last.value("tierwatch_poll_errors_total", target=faulty) or 0) - (
        first.value("tierwatch_poll_errors_total", target=faulty) or 0)
    span = down[-1].at - down[0].at
    assert errors_grew >= span / INTERVAL - 2, (errors_grew, span)
    (c0, s0), (c1, s1) = histogram(first, faulty), histogram(last, faulty)
    return FaultReport(
        scrapes=len(during),
        slowest_ms=max(o.ms for o in seen),
        down_after=first_down.at - started,
        failed_polls=c1 - c0,
        mean_failed_poll=(s1 - s0) / (c1 - c0) if c1 > c0 else float("nan"),
    )


def settled(scrape: Scrape, targets: tuple[str, ...]) -> bool:
    """Every target up with data series, and past its start-up: a PostgreSQL member polls
    once at once and then at its cluster phase, up to 1.8 intervals later (scheduler.py), so
    a fault begins only once each target has been polled twice and is on its steady beat."""
    return all(scrape.value("tierwatch_up", target=t) == 1 and data_series(scrape, t)
               and histogram(scrape, t)[0] >= 2 for t in targets)


def all_up(watcher: Watcher, timeout: float = 20.0) -> None:
    """Waits until every target of the fault suite is up and settled."""
    watcher.wait(lambda s: settled(s, TARGETS), timeout, "every target up")


def recovered(watcher: Watcher, target: str, since: float, timeout: float = 10.0) -> float:
    """Seconds from `since` until the target is up again with data series."""
    at = watcher.wait(lambda s: s.value("tierwatch_up", target=target) == 1
                      and data_series(s, target), timeout, f"{target} recovered")
    return max(0.0, at - since)


# --------------------------------------------------------------------------- faults


@contextlib.contextmanager
def frozen(server: Server) -> Iterator[list[int]]:
    """SIGSTOP the server — for PostgreSQL every process of it: the postmaster alone does
    not freeze a server whose backends are separate processes — and SIGCONT on exit."""
    pids = pids_under(server.data_dir) if isinstance(server, PgServer) else [server.pid]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


class GarbageServer:
    """A TCP server that answers every connection with `prefix` and random bytes (seeded
    per connection), then keeps it open, reading and discarding — or, with `stream`, sending
    more random bytes as fast as the client takes them — until the client goes or 10 s pass.
    """

    def __init__(self, seed: int, burst: int = 4096, prefix: bytes = b"",
                 stream: bool = False) -> None:
        self._rng = random.Random(seed)
        self.burst = burst
        self.prefix = prefix
        self.stream = stream
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="garbage", daemon=True)

    def __enter__(self) -> GarbageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            payload = self.prefix + self._rng.randbytes(self.burst)
            threading.Thread(target=self._talk, args=(conn, payload), daemon=True).start()

    def _talk(self, conn: socket.socket, payload: bytes) -> None:
        with conn:
            conn.settimeout(0.5)
            with contextlib.suppress(OSError):
                conn.sendall(payload)
                until = time.monotonic() + 10
                while not self._stop.is_set() and time.monotonic() < until:
                    if self.stream:
                        conn.sendall(payload[len(self.prefix):])
                        continue
                    try:
                        if not conn.recv(4096):
                            return
                    except TimeoutError:
                        continue


# --------------------------------------------------------------------------- connections


def daemon_sockets(daemon: DaemonProcess, port: int) -> int:
    """The daemon's open TCP sockets to `port`, from its /proc fd table."""
    return len(socket_states(daemon, port))


def socket_states(daemon: DaemonProcess, port: int) -> list[str]:
    """TCP states (hex, as in /proc/net/tcp: 01 established, 08 close-wait, ...) of the
    daemon's sockets to `port`."""
    assert daemon.proc is not None
    inodes = set()
    for entry in os.scandir(f"/proc/{daemon.proc.pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(entry.path)
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if int(parts[9]) in inodes and int(parts[2].rsplit(":", 1)[1], 16) == port:
                states.append(parts[3])
    return states


def daemon_rss_mb(daemon: DaemonProcess) -> float:
    assert daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def daemon_fds(daemon: DaemonProcess) -> int:
    assert daemon.proc is not None
    return len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))


def pg_backends(topo: Topology, server: PgServer) -> int:
    """The daemon's sessions on a PostgreSQL server (application_name=tierwatch)."""
    with psycopg.connect(topo.superuser_dsn(server), autocommit=True, connect_timeout=5) as c:
        row = c.execute("SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name = 'tierwatch'").fetchone()
    assert row is not None
    return int(row[0])


def no_leak(daemon: DaemonProcess, port: int, timeout: float = 10.0) -> int:
    """Waits until the daemon holds at most POOL_MAX sockets to `port`; returns the count."""
    try:
        return wait_until(lambda: (n := daemon_sockets(daemon, port)) <= POOL_MAX and n + 1,
                          timeout, f"at most {POOL_MAX} daemon sockets to port {port}") - 1
    except AssertionError as exc:
        raise AssertionError(f"{exc}: TCP states {socket_states(daemon, port)}") from None


def log_lines(daemon: DaemonProcess, target: str) -> list[str]:
    return [line for line in daemon.log_text().splitlines() if f"/{target} " in line]


def clean_after(daemon: DaemonProcess, topo: Topology, server: Server, target: str,
                fds_before: int) -> tuple[int, list[str]]:
    """After a fault has ended: the daemon holds at most its pool to the server (sockets,
    fds, PostgreSQL sessions), logged the outage's end and no traceback. Returns the
    sockets it holds and its log lines about the target (printed)."""
    sockets_after = no_leak(daemon, server.port)
    assert sockets_after <= POOL_MAX
    assert daemon_fds(daemon) <= fds_before + POOL_MAX
    if isinstance(server, PgServer):
        assert pg_backends(topo, server) <= POOL_MAX
    lines = log_lines(daemon, target)
    assert any("is up again" in line for line in lines), lines
    assert "Traceback" not in daemon.log_text()
    return sockets_after, lines


def print_log(lines: list[str]) -> None:
    for line in lines:
        print("   ", line.split(": ", 1)[1])


TARGETS = ("primary", "replica-1", "bouncer", "cache")


def server_of(topo: Topology, target: str) -> Server:
    """The server behind a target name of `Topology.tierwatch_config`."""
    return {"primary": topo.primary, "replica-1": topo.replica, "bouncer": topo.pgbouncer,
            "cache": topo.redis}[target]

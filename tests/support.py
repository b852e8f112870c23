"""Helpers the tests share: waiting with a deadline, running the daemon, reading /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg
import redis
from prometheus_client.parser import text_string_to_metric_families

from exporter.catalogue import CATALOGUE
from tests.topology import Topology, free_port

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_until(pred: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Polls `pred` until it returns something truthy; fails saying what never happened."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = pred()
            if result:
                return result
        except Exception as exc:  # the condition may not be checkable yet
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"{what} did not happen within {timeout:g}s{detail}")
        time.sleep(interval)


def in_step(count: int, work: Callable[[threading.Barrier], None], timeout: float = 30) -> None:
    """Runs `work(barrier)` in `count` threads that share one barrier, and waits for all;
    the first thread's error is raised here (and breaks the barrier for the others)."""
    barrier = threading.Barrier(count, timeout=timeout)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work(barrier)
        except BaseException as exc:  # re-raised below, in the test's own thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), f"threads still running after {timeout}s"


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Scrape:
    """One parsed /metrics body."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[Sample] = []
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for s in family.samples:
                self.samples.append(Sample(s.name, dict(s.labels), float(s.value)))

    def find(self, name: str, **labels: str) -> list[Sample]:
        return [
            s for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample matching; None if absent; error if ambiguous."""
        found = self.find(name, **labels)
        if len(found) > 1:
            raise AssertionError(f"{name}{labels} matches {len(found)} samples")
        return found[0].value if found else None

    def names(self) -> set[str]:
        return {s.name for s in self.samples}


def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None
             ) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class DaemonProcess:
    """`tierwatch run` as a real child process on a free port."""

    def __init__(self, config_text: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tierwatch-test-"))
        self.config_path = self.dir / "tierwatch.yaml"
        self.write_config(config_text)
        self.log_path = self.dir / "tierwatch.log"
        self._env = {**os.environ, **(env or {}), "TIERWATCH_LISTEN": f"127.0.0.1:{self.port}"}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, text: str) -> None:
        self.config_path.write_text(text)

    def start(self, wait_ready: bool = True, timeout: float = 30.0) -> DaemonProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", "-c", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, env=self._env, cwd=REPO,
        )
        log.close()
        if wait_ready:
            wait_until(lambda: self._status("/readyz") == 200, timeout,
                       f"tierwatch ready on {self.url} (log: {self.log_tail()})")
        return self

    def _status(self, path: str) -> int:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"tierwatch exited {self.proc.returncode}: {self.log_tail()}")
        return http_get(self.url + path, timeout=2)[0]

    def scrape(self) -> Scrape:
        status, body = http_get(self.url + "/metrics")
        assert status == 200, status
        return Scrape(body.decode())

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def family_of(sample_name: str) -> str:
    """The catalogue name a scraped sample belongs to."""
    if sample_name in CATALOGUE:
        return sample_name
    for suffix in ("_bucket", "_count", "_sum"):
        base = sample_name.removesuffix(suffix)
        if base != sample_name and base in CATALOGUE:
            return base
    return sample_name


def make_traffic(topology: Topology) -> None:
    """A little of every kind: cache hits and misses, a read through PgBouncer, a write and
    a read on the primary."""
    cache = redis.Redis.from_url(topology.redis_url())
    cache.set("coverage:key", "v", ex=60)
    for _ in range(5):
        cache.get("coverage:key")
        cache.get("coverage:missing")
    with psycopg.connect(topology.app_dsn_via_pgbouncer(), prepare_threshold=None,
                         autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM items").fetchone()
    with psycopg.connect(topology.superuser_dsn(topology.primary, "app"),
                         autocommit=True) as conn:
        conn.execute("INSERT INTO items(payload) VALUES ('coverage')")
        conn.execute("SELECT count(*) FROM items").fetchone()


def scrape_with_families(daemon: DaemonProcess, topology: Topology, wanted: set[str],
                         timeout: float, also: Callable[[Scrape], bool] = lambda _s: True
                         ) -> Scrape:
    """Makes traffic and scrapes until one scrape has every family in `wanted` (and `also`
    holds for it); fails naming the families still missing."""
    missing = set(wanted)

    def complete() -> Scrape | None:
        nonlocal missing
        make_traffic(topology)
        scrape = daemon.scrape()
        missing = wanted - {family_of(n) for n in scrape.names()}
        return scrape if not missing and also(scrape) else None

    try:
        return wait_until(complete, timeout, "every wanted metric family in one scrape")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; missing: {sorted(missing)}; "
                             f"log: {daemon.log_tail()}") from None

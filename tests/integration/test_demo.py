"""`make demo`, the README's first command: scripts/demo.py brings up the topology, tierwatch
and the workload, says where to look, shows every target up with live traffic, and Ctrl-C
stops everything it started."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support import Scrape, http_get, wait_until
from tests.topology import free_port, tcp_accepts

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0  # initdb, base backup, PgBouncer, Redis, tierwatch ready


class Output:
    """The demo's stdout and stderr, read line by line from a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def line(self, key: str) -> str:
        """What is printed after `key` in the demo's "everything is up" block."""
        match = re.search(rf"^\s+{key}\s+(\S.*)$", self.text(), re.MULTILINE)
        assert match, f"no {key!r} line in the demo's output:\n{self.text()}"
        return match.group(1)

    def value(self, key: str) -> str:
        """The first word of that line."""
        return self.line(key).split()[0]


def port_of(address: str) -> int:
    match = re.search(r":(\d+)(?:/|$)", address)
    assert match, address
    return int(match.group(1))


def test_demo_starts_everything_shows_live_data_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "scripts/demo.py", "--listen", listen, "--poll-interval", "1",
         "--workdir", str(tmp_path / "demo")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    out = Output(proc)
    try:
        wait_until(lambda: "demo: everything is up." in out.text() or proc.poll() is not None,
                   START_TIMEOUT, "the demo's 'everything is up'")
        assert proc.poll() is None, f"demo exited {proc.returncode}:\n{out.text()}"
        metrics = out.value("metrics")
        assert metrics == f"http://{listen}/metrics"
        ports = {name: port_of(out.value(name)) for name in ("primary", "replica", "pgbouncer",
                                                             "redis")}

        def scrape() -> Scrape:
            status, body = http_get(metrics)
            assert status == 200, status
            return Scrape(body.decode())

        def all_up() -> Scrape | None:
            s = scrape()
            up = s.find("tierwatch_up")
            kinds = {sample.labels["kind"] for sample in up}
            ok = kinds == {"postgres", "pgbouncer", "redis"} and all(x.value == 1 for x in up)
            return s if ok and len(up) == 4 else None

        first = wait_until(all_up, 30, "every demo target up")

        def lookups(s: Scrape) -> float:
            return sum(x.value for x in s.find("tierwatch_redis_keyspace_hits_total")
                       + s.find("tierwatch_redis_keyspace_misses_total"))

        # the workload is running: the cache sees lookups between two polls
        wait_until(lambda: lookups(scrape()) > lookups(first), 20,
                   "the demo workload's cache lookups in /metrics")
        assert (tmp_path / "demo" / "tierwatch.yaml").is_file()
        status, page = http_get(out.value("status"))
        assert status == 200 and b"replica-1" in page and b"pgbouncer" in page, status
        replica_check, primary_check = re.findall(r"http://\S+", out.line("routing"))
        assert replica_check.endswith("/replica/main/replica-1"), replica_check
        for check in (replica_check, primary_check):
            wait_until(lambda url=check: http_get(url)[0] == 200, 10, f"200 from {check}")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"the demo did not stop on Ctrl-C:\n{out.text()}") from None
    assert code == 0, out.text()
    assert "demo: stopping" in out.text()
    assert "Traceback" not in out.text(), out.text()
    listen_port = int(listen.rpartition(":")[2])
    for name, port in {**ports, "tierwatch": listen_port}.items():
        assert not tcp_accepts(port), f"{name} still listens on {port} after the demo stopped"

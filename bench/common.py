"""What every benchmark needs: process accounting, machine load, ports, child processes."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# one port picker for the tests and the bench (re-exported)
from tests.topology import free_port as free_port  # noqa: E402

PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
HOST = "127.0.0.1"

PEER_BINARIES = {
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
    "prometheus-pgbouncer-exporter": "prometheus-pgbouncer-exporter",
    "prometheus-redis-exporter": "prometheus-redis-exporter",
    "wrk": "wrk",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def wait_for_quiet(limit: float, deadline_s: float) -> tuple[float, float, float]:
    """Waits until the 1-min load average is below `limit`, at most `deadline_s` seconds.

    Real-time figures taken while other work runs on a 2-core machine are not trustworthy:
    the load found when giving up is returned and printed next to the figures.
    """
    give_up = time.monotonic() + deadline_s
    load = loadavg()
    if load[0] >= limit and deadline_s > 0:
        log(f"load average {load[0]:.2f} >= {limit}: waiting up to {deadline_s:.0f}s")
    while load[0] >= limit and time.monotonic() < give_up:
        time.sleep(5)
        load = loadavg()
    return load


def ensure_tools(need_peers: bool = True) -> list[str]:
    """Installs the peer exporters, wrk and py-spy when missing; returns what is still missing.

    Debian's packages are installed with RUNLEVEL=1 so their services do not start: the
    benchmarks run the binaries by hand on free loopback ports.
    """
    missing = [pkg for binary, pkg in PEER_BINARIES.items()
               if need_peers and shutil.which(binary) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       env=env, check=False, stdout=subprocess.DEVNULL)
    still = [pkg for binary, pkg in PEER_BINARIES.items()
             if need_peers and shutil.which(binary) is None]
    return still


PEERS_VENV = REPO / ".venv" / "peers"
PYPI_BOUNCER_EXPORTER = PEERS_VENV / "bin" / "pgbouncer-exporter"


def ensure_pypi_bouncer_exporter() -> Path | None:
    """PyPI's prometheus-pgbouncer-exporter 2.1.2 in a venv of its own (.venv/peers).

    It pins psycopg2 2.8.5, which has no wheel for Python 3.11 and needs libpq headers to
    build: it is installed without its pins, on psycopg2-binary and the versions it names.
    """
    if PYPI_BOUNCER_EXPORTER.exists():
        return PYPI_BOUNCER_EXPORTER
    log("installing prometheus-pgbouncer-exporter 2.1.2 from PyPI into .venv/peers")
    pip = [str(PEERS_VENV / "bin" / "pip"), "install", "-q"]
    steps = [
        [PYTHON, "-m", "venv", str(PEERS_VENV)],
        [*pip, "--no-deps", "prometheus-pgbouncer-exporter==2.1.2"],
        [*pip, "psycopg2-binary", "prometheus_client==0.8.0", "python-json-logger==0.1.11",
         "PyYAML"],
    ]
    for argv in steps:
        if subprocess.run(argv, check=False, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode != 0:
            return None
    return PYPI_BOUNCER_EXPORTER if PYPI_BOUNCER_EXPORTER.exists() else None


def py_spy() -> str | None:
    """The py-spy binary (installed into the venv from PyPI when missing), or None."""
    local = Path(PYTHON).parent / "py-spy"
    if local.exists():
        return str(local)
    found = shutil.which("py-spy")
    if found:
        return found
    subprocess.run([PYTHON, "-m", "pip", "install", "-q", "py-spy"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(local) if local.exists() else None




# --------------------------------------------------------------------------- processes


@dataclass
class ProcSample:
    at: float
    cpu_s: float  # user + system CPU seconds since the process started
    rss: int  # bytes
    hwm: int  # peak RSS in bytes


def proc_sample(pid: int) -> ProcSample:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / CLK_TCK
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return ProcSample(time.monotonic(), cpu, rss, hwm)


@dataclass
class Child:
    """A child process we started; stopped by its own pid only."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    log_path: Path | None = None
    cwd: Path = REPO
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Child:
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log_path is not None:
            out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=self.env, cwd=self.cwd, start_new_session=True,
        )
        if not isinstance(out, int):
            out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sample(self) -> ProcSample:
        return proc_sample(self.pid)

    def terminate(self) -> None:
        """SIGTERM without waiting (stop() then waits): many children stop in parallel."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def log_tail(self, limit: int = 1500) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-limit:]


def http_get(url: str, timeout: float = 10.0, gzip: bool = False) -> tuple[int, bytes]:
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, child: Child, timeout: float = 60.0, want: int = 200) -> None:
    """Waits until `url` answers `want`; fails with the child's log when it does not."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited: {child.log_tail()}")
        try:
            status, _ = http_get(url, timeout=2)
            if status == want:
                return
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{child.name}: {url} not {want} within {timeout}s ({last}): "
                       f"{child.log_tail()}")


def series_count(body: bytes) -> int:
    """Samples in an exposition: non-empty lines that are not comments."""
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]

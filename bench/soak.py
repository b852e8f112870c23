"""Soak: tierwatch against the real topology for N minutes while faults come and go at random.

Starts the local topology (PostgreSQL primary + replica, PgBouncer, Redis) and a light
application workload (scripts/workload.py), runs `tierwatch run` at poll_interval 1 s, scrapes
/metrics five times a second and, every few seconds, freezes (SIGSTOP/SIGCONT), stops and
restarts, or SIGKILLs and restarts one server. It prints a table over time:

    min rss_MB fds thr tasks conns p/r/b/c up cpu% scrapes p50_ms p99_ms max_ms stall load faults

- rss_MB, fds, thr: VmRSS, entries of /proc/PID/fd and Threads of the daemon process;
- tasks: asyncio tasks alive in the daemon's event loop (see below);
- conns: the daemon's TCP connections to primary/replica/bouncer/cache, from /proc;
- cpu%: the daemon's CPU use over the row's window;
- scrapes and latencies of /metrics in the window; stall: how late a 10 ms sleep in the
  soak process woke up at worst (a busy machine, not the daemon); load: 1-min load average;
  faults injected so far.

The task count: tierwatch exports no task gauge, so the daemon runs here under a thin
wrapper (`soak.py --daemon`) that starts the real `tierwatch run` with one extra observer
task counting `asyncio.all_tasks()` once a second into a file. Nothing else differs.

    python bench/soak.py --minutes 30 [--seed 1] [--report 60] [--json out.json]

Exit code 0 when the run finished; the verdict lines say whether memory, fds, threads and
tasks stayed flat and every scrape answered within 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SCRAPE_EVERY = 0.2  # seconds between scrapes
SCRAPE_BUDGET_MS = 100.0  # the reliability contract for /metrics
STALL_MS = 20.0  # a 10 ms sleep of the soak process this late: the machine was busy
TARGETS = ("primary", "replica-1", "bouncer", "cache")


# --------------------------------------------------------------------------- daemon side


def _daemon_child(config: str, tasks_file: str, trace: bool = False) -> int:
    """`tierwatch run -c CONFIG` plus one observer task that counts the loop's tasks and,
    with `trace`, writes where memory grew since the end of the first minute (tracemalloc;
    it slows the daemon down, so the figures of a traced run are not the ones to quote)."""
    import exporter.daemon
    from exporter import cli

    original = exporter.daemon.run_daemon
    path = Path(tasks_file)
    if trace:
        import tracemalloc

        tracemalloc.start(8)

    async def observed(settings: Any, config_path: Path) -> int:
        async def count() -> None:
            tmp = path.with_suffix(".tmp")
            baseline = None
            ticks = 0
            while True:
                tmp.write_text(str(len(asyncio.all_tasks()) - 1))  # minus this observer
                os.replace(tmp, path)
                await asyncio.sleep(1.0)
                ticks += 1
                if trace and ticks % 60 == 0:
                    snapshot = tracemalloc.take_snapshot().filter_traces(
                        [tracemalloc.Filter(False, tracemalloc.__file__)])
                    if baseline is None:
                        baseline = snapshot
                        continue
                    top = snapshot.compare_to(baseline, "traceback")[:8]
                    traced = tracemalloc.get_traced_memory()[0] / 1e6
                    lines = [f"after {ticks / 60:.0f} min: traced {traced:.2f} MB"]
                    for stat in top:
                        lines.append(f"  {stat.size_diff / 1024:+.1f} KiB {stat.count_diff:+d} "
                                     "blocks")
                        lines.extend(f"      {frame}" for frame in stat.traceback.format()[-8:])
                    path.with_suffix(".trace").write_text("\n".join(lines) + "\n")

        observer = asyncio.create_task(count(), name="soak observer")
        try:
            return await original(settings, config_path)
        finally:
            observer.cancel()

    exporter.daemon.run_daemon = observed  # cli imports it at call time
    return cli.main(["run", "-c", config])


# --------------------------------------------------------------------------- /proc readers


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _socket_inodes(pid: int) -> tuple[int, set[int]]:
    """(number of open fds, inodes of the sockets among them)."""
    fds = 0
    inodes = set()
    for entry in os.scandir(f"/proc/{pid}/fd"):
        fds += 1
        with contextlib.suppress(OSError):
            link = os.readlink(entry.path)
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    return fds, inodes


def _remote_ports(inodes: set[int]) -> Counter[int]:
    """Remote TCP port of each of `inodes` (any TCP state), counted."""
    ports: Counter[int] = Counter()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if len(parts) > 9 and int(parts[9]) in inodes:
                    ports[int(parts[2].rsplit(":", 1)[1], 16)] += 1
    return ports


@dataclass
class ProcSample:
    cpu_seconds: float  # user + system CPU time of the daemon so far
    rss_mb: float
    fds: int
    threads: int
    tasks: int | None
    conns: dict[str, int]


def sample_process(pid: int, tasks_file: Path, ports: dict[int, str]) -> ProcSample:
    status = _status(pid)
    fds, inodes = _socket_inodes(pid)
    remote = _remote_ports(inodes)
    try:
        tasks: int | None = int(tasks_file.read_text())
    except (OSError, ValueError):
        tasks = None
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return ProcSample(
        cpu_seconds=(int(stat[11]) + int(stat[12])) / ticks,
        rss_mb=int(status["VmRSS"].split()[0]) / 1024,
        fds=fds,
        threads=int(status["Threads"]),
        tasks=tasks,
        conns={name: remote.get(port, 0) for port, name in ports.items()},
    )


# --------------------------------------------------------------------------- scraping


class Scraper(threading.Thread):
    """Scrapes /metrics every SCRAPE_EVERY s and records each request's wall time."""

    def __init__(self, url: str) -> None:
        super().__init__(name="soak-scraper", daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.window: list[float] = []  # milliseconds, since the last take()
        self.all: list[float] = []
        self.failures = 0
        self.slow: list[tuple[float, float]] = []  # (monotonic start, ms) over the budget
        self.last_body = b""

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    body = response.read()
                    ok = response.status == 200
            except OSError:
                body, ok = b"", False
            ms = (time.perf_counter() - t0) * 1000
            with self.lock:
                if ok:
                    self.window.append(ms)
                    self.all.append(ms)
                    self.last_body = body
                else:
                    self.failures += 1
                if ms > SCRAPE_BUDGET_MS:
                    self.slow.append((t0, ms))
            self.stop.wait(max(0.0, SCRAPE_EVERY - (time.perf_counter() - t0)))

    def take(self) -> list[float]:
        with self.lock:
            window, self.window = self.window, []
        return window


class StallMeter(threading.Thread):
    """A control for the scrape latencies: how late a 10 ms sleep in this process wakes up.
    When scrapes are slow and this is late too, the machine was busy, not the daemon."""

    def __init__(self) -> None:
        super().__init__(name="soak-stall", daemon=True)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.worst = 0.0
        self.stalls: list[tuple[float, float]] = []  # (perf_counter at wake-up, ms late)

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            time.sleep(0.01)
            now = time.perf_counter()
            late = (now - t0 - 0.01) * 1000
            with self.lock:
                self.worst = max(self.worst, late)
                if late >= STALL_MS:
                    self.stalls.append((now, late))

    def take(self) -> float:
        with self.lock:
            worst, self.worst = self.worst, 0.0
        return worst


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def up_targets(body: bytes) -> str:
    from prometheus_client.parser import text_string_to_metric_families

    up = 0
    total = 0
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "tierwatch_up":
            for s in family.samples:
                total += 1
                up += int(s.value == 1)
    return f"{up}/{total}"


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    action: str  # freeze | restart | kill
    server: str
    seconds: float


@dataclass
class Injector:
    """One fault at a time: inject, hold, undo; every undo is also run on exit."""

    topo: Any
    rng: random.Random
    hold: tuple[float, float] = (2.0, 15.0)  # seconds a fault lasts
    only: str | None = None  # "ACTION:SERVER": always this fault
    counts: Counter[str] = field(default_factory=Counter)
    current: Fault | None = None
    _frozen: list[int] = field(default_factory=list)
    _down: list[Any] = field(default_factory=list)

    def servers(self) -> dict[str, Any]:
        t = self.topo
        return {"primary": t.primary, "replica": t.replica, "bouncer": t.pgbouncer,
                "cache": t.redis}

    def pick(self) -> Fault:
        if self.only:
            action, server = self.only.split(":")
            return Fault(action, server, self.rng.uniform(*self.hold))
        action = self.rng.choice(("freeze", "freeze", "restart", "kill"))
        names = {"freeze": ("primary", "replica", "bouncer", "cache"),
                 "restart": ("replica", "bouncer", "cache"),
                 "kill": ("bouncer", "cache")}[action]
        return Fault(action, self.rng.choice(names), self.rng.uniform(*self.hold))

    def inject(self, fault: Fault) -> None:
        from tests.topology import PgServer, pids_under

        server = self.servers()[fault.server]
        self.current = fault
        self.counts[f"{fault.action} {fault.server}"] += 1
        if fault.action == "freeze":
            pids = pids_under(server.data_dir) if isinstance(server, PgServer) else [server.pid]
            self._frozen = pids
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
        elif fault.action == "restart":
            self._down.append(server)
            server.stop()
        else:
            self._down.append(server)
            server.kill(signal.SIGKILL)

    def undo(self) -> None:
        for pid in self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen = []
        while self._down:
            server = self._down.pop()
            server.start()
        self.current = None


# --------------------------------------------------------------------------- the run


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if pred():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not happen within {timeout:g}s")


def _tierwatch_backends(topo: Any) -> dict[str, int]:
    import psycopg

    out = {}
    for name, server in (("primary", topo.primary), ("replica", topo.replica)):
        with psycopg.connect(server.superuser_dsn(), autocommit=True, connect_timeout=5) as c:
            row = c.execute("SELECT count(*) FROM pg_stat_activity "
                            "WHERE application_name = 'tierwatch'").fetchone()
        out[name] = int(row[0]) if row else -1
    return out


def _slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) in value per minute."""
    if len(points) < 2:
        return 0.0
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def run(args: argparse.Namespace) -> int:
    from scripts.workload import Endpoints
    from tests.topology import Topology, free_port

    rng = random.Random(args.seed)
    total = args.minutes * 60
    report = args.report or min(60.0, max(2.0, total / 30))
    workdir = Path(tempfile.mkdtemp(prefix="tierwatch-soak-"))
    topo = Topology().start()
    proc: subprocess.Popen[bytes] | None = None
    workload: subprocess.Popen[bytes] | None = None
    scraper = None
    stall = StallMeter()
    injector = Injector(topo, rng, hold=tuple(args.hold), only=args.only)
    try:
        config = workdir / "tierwatch.yaml"
        config.write_text(topo.tierwatch_config(poll_interval=1.0))
        tasks_file = workdir / "tasks"
        log_path = workdir / "tierwatch.log"
        port = free_port()
        env = {**os.environ, "TIERWATCH_LISTEN": f"127.0.0.1:{port}"}
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--daemon", str(config),
                 str(tasks_file), *(["--trace"] if args.trace_memory else [])],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: urllib.request.urlopen(url + "/readyz", timeout=2).status == 200, 30,
              "tierwatch ready")
        ports = {topo.primary.port: "primary", topo.replica.port: "replica",
                 topo.pgbouncer.port: "bouncer", topo.redis.port: "cache"}
        if not args.no_workload:
            # its own process, so its threads do not compete with the scraper for a GIL
            app = Endpoints.from_topology(topo)
            workload = subprocess.Popen(
                [sys.executable, str(REPO / "scripts" / "workload.py"), "--duration",
                 str(total + 120), "--rate", "30", "--flood-clients", "2", "--report-every",
                 "0", "--exit-with-parent"],
                stdout=subprocess.DEVNULL, stderr=(workdir / "workload.log").open("ab"),
                env={**os.environ, "WORKLOAD_PGBOUNCER_DSN": app.writes_dsn,
                     "WORKLOAD_REPLICA_DSN": app.reads_dsn, "WORKLOAD_REDIS_URL": app.redis_url},
                cwd=REPO)
        scraper = Scraper(url + "/metrics")
        scraper.start()
        stall.start()

        print(f"soak: {args.minutes:g} min, poll_interval 1 s, seed {args.seed}, "
              f"daemon pid {proc.pid}, log {log_path}", flush=True)
        print(HEADER, flush=True)
        began = time.monotonic()
        rows: list[dict[str, Any]] = []
        next_report = began + report
        next_fault = began + rng.uniform(3.0, 10.0)
        fault_end = 0.0
        samples: list[tuple[float, ProcSample]] = [
            (0.0, sample_process(proc.pid, tasks_file, ports))]
        last_row = samples[0]
        while True:
            now = time.monotonic()
            if now - began >= total:
                break
            if proc.poll() is not None:
                print(f"soak: the daemon exited with {proc.returncode}", flush=True)
                return 1
            if injector.current is None and now >= next_fault and not args.no_faults:
                injector.inject(injector.pick())
                assert injector.current is not None
                fault_end = now + injector.current.seconds
            elif injector.current is not None and now >= fault_end:
                injector.undo()
                next_fault = time.monotonic() + rng.uniform(*args.gap)
            samples.append((now - began, sample_process(proc.pid, tasks_file, ports)))
            if now >= next_report:
                next_report += report
                rows.append(_row(samples, last_row, scraper, stall, injector))
                last_row = samples[-1]
            upcoming = min(next_report, fault_end if injector.current else next_fault)
            time.sleep(min(1.0, max(0.05, upcoming - time.monotonic())))
        injector.undo()
        # settle, then the final row and the connection audit
        time.sleep(5)
        samples.append((time.monotonic() - began, sample_process(proc.pid, tasks_file, ports)))
        rows.append(_row(samples, last_row, scraper, stall, injector))
        backends = _tierwatch_backends(topo)
        code = _summary(args, samples, scraper, stall, injector, backends, log_path, rows)
        trace = tasks_file.with_suffix(".trace")
        if trace.exists():
            print("\nmemory growth by allocation site (tracemalloc):\n" + trace.read_text())
        return code
    finally:
        if scraper is not None:
            scraper.stop.set()
        stall.stop.set()
        with contextlib.suppress(Exception):
            injector.undo()
        if workload is not None and workload.poll() is None:
            workload.terminate()
            try:
                workload.wait(15)
            except subprocess.TimeoutExpired:
                workload.kill()
                workload.wait()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        topo.stop()


HEADER = (f"{'min':>6} {'rss_MB':>7} {'fds':>4} {'thr':>4} {'tasks':>5} "
          f"{'conns p/r/b/c':>13} {'up':>4} {'cpu%':>5} {'scrapes':>7} {'p50_ms':>6} "
          f"{'p99_ms':>6} {'max_ms':>6} {'stall':>6} {'load':>5} {'faults':>6}")


def _row(
    samples: list[tuple[float, ProcSample]],
    previous: tuple[float, ProcSample],
    scraper: Scraper,
    stall: StallMeter,
    injector: Injector,
) -> dict[str, Any]:
    elapsed, s = samples[-1]
    window = scraper.take()
    with scraper.lock:
        body = scraper.last_body
    conns = "/".join(str(s.conns.get(n, 0)) for n in ("primary", "replica", "bouncer", "cache"))
    try:
        up = up_targets(body)
    except Exception:
        up = "?"
    span = max(elapsed - previous[0], 1e-9)
    row = {
        "minute": round(elapsed / 60, 2), "rss_mb": round(s.rss_mb, 1), "fds": s.fds,
        "threads": s.threads, "tasks": s.tasks, "conns": conns, "up": up,
        "cpu_pct": round(100 * (s.cpu_seconds - previous[1].cpu_seconds) / span, 1),
        "scrapes": len(window), "p50_ms": round(percentile(window, 0.5), 2),
        "p99_ms": round(percentile(window, 0.99), 2),
        "max_ms": round(max(window), 2) if window else None,
        "stall_ms": round(stall.take(), 1),
        "load": float(Path("/proc/loadavg").read_text().split()[0]),
        "faults": sum(injector.counts.values()),
    }
    print(f"{row['minute']:>6.2f} {row['rss_mb']:>7.1f} {row['fds']:>4} {row['threads']:>4} "
          f"{row['tasks'] if row['tasks'] is not None else '-':>5} {conns:>13} {up:>4} "
          f"{row['cpu_pct']:>5.1f} {row['scrapes']:>7} {row['p50_ms']:>6.2f} "
          f"{row['p99_ms']:>6.2f} "
          f"{row['max_ms'] if row['max_ms'] is not None else float('nan'):>6.2f} "
          f"{row['stall_ms']:>6.1f} {row['load']:>5.2f} {row['faults']:>6}", flush=True)
    return row


def _explained(slow: list[tuple[float, float]], stalls: list[tuple[float, float]]) -> int:
    """Slow scrapes during which the soak process itself was held up (a stall ended between
    the request's start and its end): the machine was busy, whatever the daemon did."""
    return sum(1 for t0, ms in slow
               if any(t0 <= at <= t0 + ms / 1000 + 0.05 for at, _ in stalls))


def _summary(
    args: argparse.Namespace,
    samples: list[tuple[float, ProcSample]],
    scraper: Scraper,
    stall: StallMeter,
    injector: Injector,
    backends: dict[str, int],
    log_path: Path,
    rows: list[dict[str, Any]],
) -> int:
    # warm-up: the first minute (or first fifth of a short run) fills caches and pools
    warm = min(60.0, samples[-1][0] / 5)
    steady = [(t, s) for t, s in samples if t >= warm] or samples
    rss = [s.rss_mb for _, s in steady]
    fds = [s.fds for _, s in steady]
    # the fds that are not connections to the servers (those come and go with the faults)
    other = [s.fds - sum(s.conns.values()) for _, s in steady]
    conns_max = max(max(s.conns.values()) for _, s in steady)
    conns_end = samples[-1][1].conns
    threads = [s.threads for _, s in steady]
    tasks = [s.tasks for _, s in steady if s.tasks is not None]
    half = [(t, s.rss_mb) for t, s in steady if t >= samples[-1][0] / 2]
    slope_kb = _slope_per_min(half) * 1024
    with scraper.lock:
        lat = list(scraper.all)
        failures = scraper.failures
        slow_scrapes = list(scraper.slow)
    with stall.lock:
        stalls = list(stall.stalls)
    slow = len(slow_scrapes)
    explained = _explained(slow_scrapes, stalls)
    log = log_path.read_text(errors="replace")
    faults = ", ".join(f"{k} x{v}" for k, v in sorted(injector.counts.items())) or "none"
    print(f"\nsummary: {samples[-1][0] / 60:.1f} min, {sum(injector.counts.values())} faults "
          f"({faults})")
    print(f"  rss_MB   after warm-up {rss[0]:.1f}, end {rss[-1]:.1f}, min {min(rss):.1f}, "
          f"max {max(rss):.1f}, slope over the 2nd half {slope_kb:+.0f} KB/min")
    print(f"  fds      start {fds[0]}, end {fds[-1]}, min {min(fds)}, max {max(fds)}; "
          f"besides server connections min {min(other)}, max {max(other)}; connections to "
          f"one server at most {conns_max}, at the end "
          + "/".join(str(conns_end.get(n, 0)) for n in ("primary", "replica", "bouncer", "cache")))
    print(f"  threads  start {threads[0]}, end {threads[-1]}, min {min(threads)}, "
          f"max {max(threads)}")
    if tasks:
        print(f"  tasks    start {tasks[0]}, end {tasks[-1]}, min {min(tasks)}, max {max(tasks)}")
    print(f"  scrapes  {len(lat)} ok, {failures} failed, p50 {percentile(lat, 0.5):.2f} ms, "
          f"p99 {percentile(lat, 0.99):.2f} ms, max {max(lat) if lat else float('nan'):.2f} ms, "
          f"over {SCRAPE_BUDGET_MS:g} ms: {slow} ({explained} while the soak process itself "
          f"stalled >= {STALL_MS:g} ms; {len(stalls)} such stalls in the run)")
    print(f"  daemon backends after the run (application_name=tierwatch): "
          f"primary {backends['primary']}, replica {backends['replica']} (limit 2 each)")
    print(f"  daemon log: {log.count('Traceback')} tracebacks, "
          f"{log.count(' WARNING ')} warnings, {log.count(' ERROR ')} errors")
    verdict = {
        "memory_flat": abs(slope_kb) < 50 and rss[-1] - rss[0] < 5,
        "fds_flat": max(other) - min(other) <= 2 and max(conns_end.values()) <= 2,
        "threads_flat": threads[-1] <= threads[0] + 1,
        "tasks_flat": not tasks or tasks[-1] <= tasks[0] + 2,
        "scrapes_within_budget": slow == explained and failures == 0,
        "no_leaked_backends": max(backends.values()) <= 2,
        "no_tracebacks": "Traceback" not in log,
    }
    print("  verdict  " + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in verdict.items()),
          flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "minutes": args.minutes, "seed": args.seed, "rows": rows,
            "faults": dict(injector.counts), "verdict": verdict,
            "rss_slope_kb_per_min": slope_kb, "scrapes": len(lat), "scrape_failures": failures,
            "scrape_p50_ms": percentile(lat, 0.5), "scrape_p99_ms": percentile(lat, 0.99),
            "scrape_max_ms": max(lat) if lat else None, "over_budget": slow,
            "over_budget_while_stalled": explained, "stalls": len(stalls),
            "other_fds": [min(other), max(other)], "connections_max": conns_max,
            "backends": backends,
        }, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--daemon"]:
        return _daemon_child(argv[1], argv[2], trace=argv[3:] == ["--trace"])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", type=float, default=0.0,
                        help="seconds between table rows (default: 1/30 of the run, 2-60 s)")
    parser.add_argument("--json", help="also write the rows and the summary to this file")
    parser.add_argument("--no-workload", action="store_true",
                        help="no application traffic, only tierwatch")
    parser.add_argument("--hold", type=float, nargs=2, default=[2.0, 15.0], metavar=("MIN", "MAX"),
                        help="seconds a fault lasts (default 2 15)")
    parser.add_argument("--gap", type=float, nargs=2, default=[3.0, 20.0], metavar=("MIN", "MAX"),
                        help="seconds between faults (default 3 20)")
    parser.add_argument("--only", metavar="ACTION:SERVER",
                        help="always this fault, e.g. kill:cache, freeze:primary, "
                        "restart:replica (for finding what a trend comes from)")
    parser.add_argument("--no-faults", action="store_true",
                        help="inject no faults: a control run for the figures")
    parser.add_argument("--trace-memory", action="store_true",
                        help="run the daemon under tracemalloc and print where memory grew "
                        "(slower: for finding a leak, not for the figures)")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

"""Side by side: tierwatch and the exporters it replaces, on the same servers, in one run.

Brings up the topology (tests/topology.py) and runs, on free loopback ports:

- tierwatch (`python -m exporter run`, poll_interval 15 s) watching all four servers;
- Debian's prometheus-postgres-exporter twice (primary, replica), prometheus-pgbouncer-exporter
  and prometheus-redis-exporter, started by hand with flags and environment.

Each exporter gets its own attribution on the servers, so the load it causes can be told
apart from the others' while all run at once:

- PostgreSQL: tierwatch's targets connect to database `bench_tw`, the postgres_exporters to
  `bench_peer` (the monitor role sees server-wide views from any database); new sessions
  and transactions are `sessions` and `xact_commit + xact_rollback` of that database in
  pg_stat_database (PG 14+), read from a superuser connection in another database.
- PgBouncer: tierwatch logs in as `monitor`, the peer as `peer` (added to the auth file and
  stats_users); PgBouncer 1.18 has no login counter, so logins are the `login attempt` lines
  of its log (log_connections is on by default) per user.
- Redis: one server-wide counter pair (`total_connections_received`,
  `total_commands_processed`); the INFO that reads them (1 command per read) is subtracted,
  and so is tierwatch's background polling (its measured rate) while a peer is measured.
  redis_exporter runs as the default user: the `monitor` ACL user (+info +ping +config|get)
  does not allow its CONFIG/SLOWLOG/LATENCY/CLIENT commands.

Phases: (A) a steady minute in which only tierwatch is scraped, every 15 s like Prometheus:
tierwatch's load per minute and every process's idle CPU; then (B) rounds in which each
exporter in turn gets a sequential burst (1 connection) and a burst from 16 concurrent
scrapers (wrk). Figures are medians over the rounds; server load per scrape is measured in
the first round (with a settle pause so PostgreSQL's statistics are flushed).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
import yaml

from bench import loadgen, renderbench
from bench.common import (
    HOST,
    PYTHON,
    REPO,
    Child,
    ProcSample,
    ensure_pypi_bouncer_exporter,
    free_port,
    http_get,
    loadavg,
    log,
    series_count,
    wait_http,
)
from tests.topology import Topology

TW_DB, PEER_DB = "bench_tw", "bench_peer"
PEER_BOUNCER_USER = "peer"
SCRAPE_INTERVAL = 15.0  # what a Prometheus would use; peers' per-minute figures assume it
PG_STATS_SETTLE = 11.0  # an idle backend flushes its pending statistics within 10 s
EXPOSITION = "tierwatch-exposition.txt"  # one real /metrics body, for bench/httpproto.py


# seq: 1 connection; one_core: the same with client and exporter on one CPU (this VM halts
# an idle vCPU at once, and waking it for a cross-CPU round trip costs up to ~2 ms);
# c16: 16 concurrent connections (2 wrk threads)
MODES = (("seq", 1), ("one_core", 1), ("c16", 16))
NCPU = len(os.sched_getaffinity(0))
PIN_CPU = NCPU - 1
ALL_CPUS = f"0-{NCPU - 1}"


def _pin(pid: int, cpus: str) -> None:
    """Every thread of `pid` (ours) onto `cpus`; threads it starts later inherit it."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class Exporter:
    name: str  # tierwatch, postgres_exporter(primary), ...
    child: Child
    url: str  # /metrics
    kind: str  # tierwatch | postgres | pgbouncer | redis
    server: str = ""  # primary | replica for postgres_exporter
    bursts: list[dict[str, Any]] = field(default_factory=list)
    load: dict[str, float] = field(default_factory=dict)  # per scrape, round 1
    idle_cpu_per_min: float = 0.0
    series: int = 0
    body_bytes: int = 0
    body_gzip_bytes: int = 0


class Servers:
    """Reads the per-exporter load counters of the monitored servers."""

    def __init__(self, topo: Topology, bouncer_log: Path) -> None:
        self.pg = {
            "primary": psycopg.connect(topo.superuser_dsn(topo.primary), autocommit=True),
            "replica": psycopg.connect(topo.superuser_dsn(topo.replica), autocommit=True),
        }
        self.redis = redis.Redis(HOST, topo.redis.port)
        self.bouncer_log = bouncer_log

    def close(self) -> None:
        for conn in self.pg.values():
            conn.close()
        self.redis.close()

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for server, conn in self.pg.items():
            rows = conn.execute(
                "SELECT datname, sessions, xact_commit + xact_rollback FROM pg_stat_database "
                "WHERE datname IN (%s, %s)", (TW_DB, PEER_DB)).fetchall()
            for datname, sessions, xacts in rows:
                out[f"pg.{server}.{datname}.sessions"] = float(sessions)
                out[f"pg.{server}.{datname}.xacts"] = float(xacts)
        info = self.redis.info("stats")
        out["redis.connections"] = float(info["total_connections_received"])
        out["redis.commands"] = float(info["total_commands_processed"])
        text = self.bouncer_log.read_text(errors="replace") if self.bouncer_log.exists() else ""
        for user in ("monitor", PEER_BOUNCER_USER):
            out[f"bouncer.logins.{user}"] = float(
                len(re.findall(rf"login attempt: db=pgbouncer user={user}\b", text)))
        return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    d["redis.commands"] -= 1  # the INFO that took `before`
    return d


def _poll_counts(body: bytes) -> dict[str, float]:
    """tierwatch's own count of polls per target, from tierwatch_poll_duration_seconds."""
    counts: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith("tierwatch_poll_duration_seconds_count{"):
            target = re.search(r'target="([^"]+)"', line)
            if target:
                counts[target.group(1)] = float(line.rsplit(" ", 1)[1])
    return counts


def _tierwatch_config(topo: Topology, port: int, interval: float) -> str:
    pw = topo.write_password_files()

    def pg(server: Any) -> dict[str, str]:
        return {"name": server.name,
                "dsn": f"postgresql://monitor@{server.host}:{server.port}/{TW_DB}",
                "password_file": str(pw["postgres"])}

    doc = {
        "listen": f"{HOST}:{port}",
        "poll_interval": interval,
        "clusters": [{
            "name": "main",
            "postgres": [pg(topo.primary), pg(topo.replica)],
            "pgbouncer": [{"name": "bouncer",
                           "dsn": f"postgresql://monitor@{HOST}:{topo.pgbouncer.port}/pgbouncer",
                           "password_file": str(pw["pgbouncer"])}],
            "redis": [{"name": "cache", "url": f"redis://monitor@{HOST}:{topo.redis.port}/0",
                       "password_file": str(pw["redis"])}],
        }],
    }
    return yaml.safe_dump(doc, sort_keys=False)


_DAEMON_DISTS = ("psycopg", "psycopg-pool", "redis", "pydantic", "pydantic-core",
                 "pydantic-settings", "APScheduler", "prometheus-client", "PyYAML")


def daemon_libraries() -> dict[str, str]:
    """The releases the measured daemon imports, and where psycopg's libpq comes from: the
    RSS figure moves with both (docs/benchmarks.md, section 4). The daemon runs on this
    interpreter and environment (PYTHON), so this process loads the same ones."""
    return {**{dist: importlib.metadata.version(dist) for dist in _DAEMON_DISTS},
            "psycopg implementation": psycopg.pq.__impl__, "libpq": str(psycopg.pq.version())}


def _prepare_servers(topo: Topology, peer_password: str) -> None:
    with psycopg.connect(topo.superuser_dsn(topo.primary), autocommit=True) as conn:
        for db in (TW_DB, PEER_DB):
            conn.execute(f"CREATE DATABASE {db}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the replica must have replayed both
        if topo.psql(topo.replica, f"SELECT count(*) FROM pg_database WHERE datname "
                     f"IN ('{TW_DB}', '{PEER_DB}')") == "2":
            break
        time.sleep(0.2)
    assert topo.workdir is not None
    d = topo.workdir / "pgbouncer"
    userlist = d / "userlist.txt"
    userlist.write_text(userlist.read_text() + f'"{PEER_BOUNCER_USER}" "{peer_password}"\n')
    ini = d / "pgbouncer.ini"
    ini.write_text(ini.read_text().replace(
        "stats_users = monitor", f"stats_users = monitor, {PEER_BOUNCER_USER}"))
    topo.pgbouncer.kill(signal.SIGHUP)  # PgBouncer re-reads its ini and auth file
    time.sleep(0.5)


def _debian_bouncer_exporter(topo: Topology, workdir: Path, password: str) -> str:
    """Debian's prometheus-pgbouncer-exporter, tried first: the one `apt-get` gives."""
    port = free_port()
    child = Child("debian pgbouncer exporter",
                  ["prometheus-pgbouncer-exporter", "--host", HOST, "--port", str(port),
                   "--pgbouncer-host", HOST, "--pgbouncer-port", str(topo.pgbouncer.port),
                   "--pgbouncer-user", PEER_BOUNCER_USER],
                  env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"},
                  log_path=workdir / "debian_pgbouncer_exporter.log")
    try:
        child.start()
        wait_http(f"http://{HOST}:{port}/metrics", child, timeout=10)
    except (RuntimeError, OSError) as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        return (f"Debian's prometheus-pgbouncer-exporter does not run against PgBouncer "
                f"{_bouncer_version()}: {last[:200]}; PyPI's 2.1.2 stands in for it")
    finally:
        child.stop()
    return "Debian's prometheus-pgbouncer-exporter started (not measured: PyPI's is)"


def _bouncer_version() -> str:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                         check=False).stdout.split()
    return out[1] if len(out) > 1 else "?"


def _start_exporters(topo: Topology, workdir: Path, interval: float, with_peers: bool,
                     peer_password: str, notes: list[str], exporters: list[Exporter]) -> None:
    """Starts them into `exporters` one by one, so a failure half-way still stops them all."""
    port = free_port()
    cfg = workdir / "tierwatch.yaml"
    cfg.write_text(_tierwatch_config(topo, port, interval))
    tw = Child("tierwatch", [PYTHON, "-m", "exporter", "run", "-c", str(cfg)],
               log_path=workdir / "tierwatch.log").start()
    exporters.append(Exporter("tierwatch", tw, f"http://{HOST}:{port}/metrics", "tierwatch"))
    wait_http(f"http://{HOST}:{port}/readyz", tw, timeout=60)
    if not with_peers:
        return
    pw = topo.monitor_password
    for server in (topo.primary, topo.replica):
        port = free_port()
        short = "primary" if server is topo.primary else "replica"
        dsn = f"postgresql://monitor:{pw}@{HOST}:{server.port}/{PEER_DB}?sslmode=disable"
        child = Child(f"postgres_exporter({short})",
                      ["prometheus-postgres-exporter", f"--web.listen-address={HOST}:{port}"],
                      env={"DATA_SOURCE_NAME": dsn, "PATH": "/usr/bin:/bin"},
                      log_path=workdir / f"postgres_exporter_{short}.log").start()
        exporters.append(Exporter(child.name, child, f"http://{HOST}:{port}/metrics",
                                  "postgres", short))
    notes.append(_debian_bouncer_exporter(topo, workdir, peer_password))
    binary = ensure_pypi_bouncer_exporter()
    if binary is not None:
        port = free_port()
        bcfg = workdir / "pgbouncer_exporter.yaml"
        bcfg.write_text(yaml.safe_dump({
            "exporter_host": HOST, "exporter_port": port,
            "pgbouncers": [{"dsn": f"postgresql://{PEER_BOUNCER_USER}:{peer_password}@{HOST}:"
                                   f"{topo.pgbouncer.port}/pgbouncer", "connect_timeout": 5}],
        }))
        bcfg.chmod(0o600)
        # its --log-file takes a path ("stdout" would be a file of that name in the cwd)
        log_path = workdir / "pgbouncer_exporter.log"
        child = Child("pgbouncer_exporter", [str(binary), "--config", str(bcfg),
                                             "--log-level", "WARNING", "--log-file",
                                             str(log_path)],
                      log_path=log_path).start()
        exporters.append(Exporter(child.name, child, f"http://{HOST}:{port}/metrics",
                                  "pgbouncer"))
    else:
        notes.append("PyPI prometheus-pgbouncer-exporter could not be installed: left out")
    port = free_port()
    child = Child("redis_exporter",
                  ["prometheus-redis-exporter", f"--redis.addr=redis://{HOST}:{topo.redis.port}",
                   f"--web.listen-address={HOST}:{port}"],
                  log_path=workdir / "redis_exporter.log").start()
    exporters.append(Exporter(child.name, child, f"http://{HOST}:{port}/metrics", "redis"))
    for e in exporters[1:]:
        wait_http(e.url, e.child, timeout=30)


def _own_load(e: Exporter, d: dict[str, float]) -> dict[str, float]:
    """The server-side load attributable to exporter `e` in delta `d`."""
    if e.kind == "tierwatch":
        both = ("primary", "replica")
        return {
            "pg_sessions": sum(d.get(f"pg.{s}.{TW_DB}.sessions", 0) for s in both),
            "pg_xacts": sum(d.get(f"pg.{s}.{TW_DB}.xacts", 0) for s in both),
            "bouncer_logins": d.get("bouncer.logins.monitor", 0),
            "redis_connections": d.get("redis.connections", 0),
            "redis_commands": d.get("redis.commands", 0),
        }
    out = {"pg_sessions": 0.0, "pg_xacts": 0.0, "bouncer_logins": 0.0,
           "redis_connections": 0.0, "redis_commands": 0.0}
    if e.kind == "postgres":
        out["pg_sessions"] = d.get(f"pg.{e.server}.{PEER_DB}.sessions", 0)
        out["pg_xacts"] = d.get(f"pg.{e.server}.{PEER_DB}.xacts", 0)
    elif e.kind == "pgbouncer":
        out["bouncer_logins"] = d.get(f"bouncer.logins.{PEER_BOUNCER_USER}", 0)
    elif e.kind == "redis":
        out["redis_connections"] = d.get("redis.connections", 0)
        out["redis_commands"] = d.get("redis.commands", 0)
    return out


def run(quick: bool = False, with_peers: bool = True, out_dir: Path | None = None,
        rounds: int | None = None, burst_s: float | None = None) -> dict[str, Any]:
    rounds = rounds or (1 if quick else 3)
    burst_s = burst_s or (1.0 if quick else 8.0)
    interval = 2.0 if quick else SCRAPE_INTERVAL
    steady_s = 4.0 if quick else 60.0
    settle_s = 1.0 if quick else PG_STATS_SETTLE
    result: dict[str, Any] = {"quick": quick, "rounds": rounds, "burst_seconds": burst_s,
                              "poll_interval": interval, "steady_seconds": steady_s,
                              "load_before": loadavg(), "libraries": daemon_libraries()}
    topo = Topology().start()
    assert topo.workdir is not None
    workdir = topo.workdir / "bench"
    workdir.mkdir()
    peer_password = topo.app_password  # any secret will do; PgBouncer checks it by SCRAM
    exporters: list[Exporter] = []
    servers: Servers | None = None
    try:
        _prepare_servers(topo, peer_password)
        _start_exporters(topo, workdir, interval, with_peers, peer_password,
                         result.setdefault("notes", []), exporters)
        servers = Servers(topo, topo.workdir / "logs" / "pgbouncer.log")
        tw = exporters[0]
        log(f"side by side: {', '.join(e.name for e in exporters)}")
        for e in exporters:  # warm-up, and what one scrape returns
            http_get(e.url)
            _, body = http_get(e.url)
            if e is exporters[0] and out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                (out_dir / EXPOSITION).write_bytes(body)
            e.series = series_count(body)
            e.body_bytes = len(body)
            _, gz = http_get(e.url, gzip=True)
            e.body_gzip_bytes = len(gz)

        # (A) the steady minute: only tierwatch is scraped, every 15 s like Prometheus
        time.sleep(settle_s)
        cpu0 = {e.name: e.child.sample() for e in exporters}
        polls0 = _poll_counts(http_get(tw.url)[1])
        srv0 = servers.read()
        t0 = time.monotonic()
        while time.monotonic() - t0 < steady_s:
            http_get(tw.url, gzip=True)
            time.sleep(min(interval, max(0.0, steady_s - (time.monotonic() - t0))))
        elapsed = time.monotonic() - t0
        srv1 = servers.read()
        cpu1 = {e.name: e.child.sample() for e in exporters}
        polls1 = _poll_counts(http_get(tw.url)[1])
        # an idle backend whose last flush is over 1 s old flushes its statistics at once,
        # so tierwatch's (one poll per interval) are current here without a settle pause
        steady_delta = _delta(srv1, srv0)
        polls = {t: polls1.get(t, 0) - polls0.get(t, 0) for t in polls1}
        tw_load = _own_load(tw, steady_delta)
        per_poll = {
            "pg_sessions": tw_load["pg_sessions"] / max(1, polls["primary"] + polls["replica-1"]),
            "pg_xacts": tw_load["pg_xacts"] / max(1, polls["primary"] + polls["replica-1"]),
            "bouncer_logins": tw_load["bouncer_logins"] / max(1, polls["bouncer"]),
            "redis_connections": tw_load["redis_connections"] / max(1, polls["cache"]),
            "redis_commands": tw_load["redis_commands"] / max(1, polls["cache"]),
        }
        # per minute at a 15 s poll interval: 4 polls of each target
        polls_per_min = {"pg_sessions": 8, "pg_xacts": 8, "bouncer_logins": 4,
                         "redis_connections": 4, "redis_commands": 4}
        tw_per_min = {k: per_poll[k] * polls_per_min[k] for k in per_poll}
        redis_bg_per_s = per_poll["redis_commands"] / interval  # tierwatch's, subtracted below
        for e in exporters:
            e.idle_cpu_per_min = (cpu1[e.name].cpu_s - cpu0[e.name].cpu_s) * 60 / elapsed
        ups = re.findall(r'^tierwatch_up\{[^}]*target="([^"]+)"\} (\S+)$',
                         http_get(tw.url)[1].decode(), re.M)
        result["steady"] = {"seconds": elapsed, "polls": polls, "delta": steady_delta,
                            "raw_before": srv0, "raw_after": srv1, "up": dict(ups),
                            "tierwatch_per_poll": per_poll, "tierwatch_per_min": tw_per_min,
                            "tierwatch_scrapes": int(steady_s // interval) + 1,
                            "load": loadavg()}
        log(f"steady minute: tierwatch polls {polls}, load per poll {per_poll}")

        # (B) rounds of bursts, alternating exporters
        for rnd in range(rounds):
            for e in exporters:
                srv_a = servers.read()
                polls_a = _poll_counts(http_get(tw.url)[1]) if e is tw else {}
                t_a = time.monotonic()
                scrapes = 0
                for mode, conns in MODES:
                    cpu = PIN_CPU if mode == "one_core" else None
                    if cpu is not None:
                        _pin(e.child.pid, str(cpu))
                    before: ProcSample = e.child.sample()
                    la = loadavg()[0]
                    try:
                        r = loadgen.run(e.url, conns, burst_s, cpu=cpu)
                    finally:
                        if cpu is not None:
                            _pin(e.child.pid, ALL_CPUS)
                    after = e.child.sample()
                    scrapes += r.requests
                    burst = r.as_dict() | {
                        "mode": mode, "round": rnd, "cpu_s": after.cpu_s - before.cpu_s,
                        "load1": la,
                        "cpu_ms_per_scrape": 1000 * (after.cpu_s - before.cpu_s)
                        / max(1, r.requests)}
                    e.bursts.append(burst)
                    log(f"{e.name} {mode}: p50 {r.p50_ms:.3f} ms p99 {r.p99_ms:.3f} ms "
                        f"{r.rps:.0f}/s errors {r.errors} (load {la:.2f})")
                if rnd == 0:
                    time.sleep(settle_s)
                    d = _delta(servers.read(), srv_a)
                    dt = time.monotonic() - t_a
                    if e.kind in ("redis", "tierwatch"):  # tierwatch's polls meanwhile
                        d["redis.commands"] -= redis_bg_per_s * dt
                    own = _own_load(e, d)
                    if e is tw:  # what its polls did during the bursts is not per scrape
                        pc = _poll_counts(http_get(tw.url)[1])
                        n = {t: pc.get(t, 0) - polls_a.get(t, 0) for t in pc}
                        pg_polls = n.get("primary", 0) + n.get("replica-1", 0)
                        own["pg_xacts"] -= per_poll["pg_xacts"] * pg_polls
                        own["pg_sessions"] -= per_poll["pg_sessions"] * pg_polls
                    e.load = {k: v / max(1, scrapes) for k, v in own.items()}
                    e.load["scrapes"] = scrapes
        result["load_after"] = loadavg()
        for e in exporters:
            s = e.child.sample()
            e.load.setdefault("scrapes", 0)
            result.setdefault("exporters", []).append(_summary(e, s, tw_per_min))
        result["ratios"] = _ratios(result["exporters"])
        # render time against target count, from these servers' real answers
        counts = (4, 40) if quick else (4, 20, 200, 1000, 2000)
        result["render"] = renderbench.run((workdir / "tierwatch.yaml").read_text(), counts,
                                           repeat=3 if quick else 5)
    finally:
        if servers is not None:
            servers.close()
        for e in exporters:
            e.child.stop()
        topo.stop()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / ("sidebyside-quick.json" if quick else "sidebyside.json")).write_text(
            json.dumps(result, indent=2, default=str))
    return result


def _median(bursts: list[dict[str, Any]], mode: str, key: str) -> float:
    values = [b[key] for b in bursts if b["mode"] == mode]
    return statistics.median(values) if values else float("nan")


def _summary(e: Exporter, s: ProcSample, tw_per_min: dict[str, float]) -> dict[str, Any]:
    seq_cpu = _median(e.bursts, "seq", "cpu_ms_per_scrape")
    if e.kind == "tierwatch":
        per_min = dict(tw_per_min)
        cpu_per_min = e.idle_cpu_per_min  # polls plus 4 scrapes, measured
    else:
        scrapes_per_min = 60 / SCRAPE_INTERVAL
        per_min = {k: v * scrapes_per_min for k, v in e.load.items() if k != "scrapes"}
        cpu_per_min = e.idle_cpu_per_min + scrapes_per_min * seq_cpu / 1000
    return {
        "name": e.name,
        **{mode: {k: _median(e.bursts, mode, k) for k in ("p50_ms", "p99_ms", "rps")}
           for mode, _ in MODES},
        "errors": sum(b["errors"] for b in e.bursts),
        "tool": e.bursts[0]["tool"] if e.bursts else "",
        "series": e.series,
        "body_bytes": e.body_bytes,
        "body_gzip_bytes": e.body_gzip_bytes,
        "cpu_ms_per_scrape": seq_cpu,
        "cpu_s_per_min": cpu_per_min,
        "idle_cpu_s_per_min": e.idle_cpu_per_min,
        "rss_mb": s.rss / 2**20,
        "peak_rss_mb": s.hwm / 2**20,
        "load_per_scrape": {k: v for k, v in e.load.items() if k != "scrapes"},
        "load_per_min": per_min,
        "bursts": e.bursts,
    }


def _ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """tierwatch ÷ each peer, from the same run, per round and as the median over rounds."""
    tw = rows[0]
    out: dict[str, Any] = {}
    for peer in rows[1:]:
        per_round: dict[str, list[float]] = {}
        for mode, _ in MODES:
            for b_tw in (b for b in tw["bursts"] if b["mode"] == mode):
                b_peer = next((b for b in peer["bursts"] if b["mode"] == mode
                               and b["round"] == b_tw["round"]), None)
                if b_peer is None:
                    continue
                per_round.setdefault(f"{mode}_p99", []).append(b_tw["p99_ms"] / b_peer["p99_ms"])
                per_round.setdefault(f"{mode}_rps", []).append(b_tw["rps"] / b_peer["rps"])
        out[peer["name"]] = {k: {"median": statistics.median(v), "worst": _worst(k, v),
                                 "rounds": v} for k, v in per_round.items()}
    return out


def _worst(key: str, values: list[float]) -> float:
    # a p99 ratio is worst when largest, a throughput ratio when smallest
    return max(values) if key.endswith("p99") else min(values)


def table(result: dict[str, Any]) -> str:
    """The figures as two Markdown tables (what docs/benchmarks.md quotes)."""
    rows = result.get("exporters", [])
    lines = [
        "| exporter | seq p50 / p99 ms | seq scrapes/s | one core p50 / p99 ms | "
        "one core scrapes/s | c16 p50 / p99 ms | c16 scrapes/s |",
        "|" + "---|" * 7,
    ]
    for r in rows:
        cells = [f"{r[m]['p50_ms']:.3f} / {r[m]['p99_ms']:.3f} | {r[m]['rps']:.0f}"
                 for m, _ in MODES]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| exporter | series | body KiB (gzip) | CPU ms/scrape | CPU s/min | peak RSS MB |",
        "|" + "---|" * 6,
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['series']} | {r['body_bytes'] / 1024:.1f} "
            f"({r['body_gzip_bytes'] / 1024:.1f}) | {r['cpu_ms_per_scrape']:.3f} | "
            f"{r['cpu_s_per_min']:.3f} | {r['peak_rss_mb']:.1f} |")
    lines += [
        "",
        "| exporter | per scrape: PG sessions | PG xacts | PgB logins | Redis conns | "
        "Redis cmds | per minute: PG sessions | PG xacts | PgB logins | Redis conns | "
        "Redis cmds |",
        "|" + "---|" * 11,
    ]
    for r in rows:
        ls, lm = r["load_per_scrape"], r["load_per_min"]
        lines.append(
            f"| {r['name']} | "
            + " | ".join(f"{ls.get(k, 0):.2f}" for k in _LOADS) + " | "
            + " | ".join(f"{lm.get(k, 0):.1f}" for k in _LOADS) + " |")
    return "\n".join(lines)


_LOADS = ("pg_sessions", "pg_xacts", "bouncer_logins", "redis_connections", "redis_commands")


def ratio_lines(result: dict[str, Any]) -> str:
    lines = []
    for peer, r in result.get("ratios", {}).items():
        parts = [f"{k} {v['median']:.3f} (worst round {v['worst']:.3f})" for k, v in r.items()]
        lines.append(f"tierwatch/{peer}: " + ", ".join(parts))
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    res = run(quick=args.quick, with_peers=not args.no_peers, out_dir=args.out)
    print(table(res))
    print(ratio_lines(res))
    print("daemon libraries: " + ", ".join(f"{k} {v}" for k, v in res["libraries"].items()))

"""Scale: one tierwatch polling many targets at a 15 s interval, and where its time goes.

For each target count N of a ladder, the daemon runs under bench/twprobe.py (the real
`tierwatch run` plus a record of when each poll was due and when it started) against:

- Redis targets: N − N/11 of them, on a fleet of real `redis-server` processes on loopback
  (`--save '' --appendonly no --maxmemory 1mb --hz 1`, default user, no password). Past
  `--redis-servers` processes (250 by default) targets share servers round robin: each
  target still has its own name, client, connection and poll;
- PostgreSQL targets: N/11 of them, all the topology's primary listed under different
  target names (each with its own pool and warm connection, database `postgres`), so each
  target's answer is as large as a real instance's; the replica is stopped and the
  primary's max_connections raised to hold every pool;
- targets grouped as clusters of 1 PostgreSQL + 10 Redis.

A level: start, wait for /readyz, one interval of warm-up, then a measured window
(4 intervals by default) in which a Prometheus-like client scrapes /metrics (gzip) once per
interval. A poll is on time when it started at most 1 s after the time the scheduler had
set for it, and it was neither dropped as missed nor skipped because its previous poll
still ran. Reported per level: on-time rate, lateness p50/p99/max, poll duration p50/p99,
CPU % of one core, RSS, /metrics size and render time.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import shutil
import socket
import statistics
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    HOST,
    PYTHON,
    REPO,
    Child,
    free_port,
    http_get,
    loadavg,
    log,
    percentile,
    py_spy,
    series_count,
    wait_http,
)
from tests.topology import Topology

ON_TIME_S = 1.0
FULL_LEVELS = (20, 110, 220, 550, 1100, 1650, 2200, 3300)


def _redis_fleet(count: int, workdir: Path, fleet: list[tuple[int, Child]]) -> None:
    """Starts `count` servers into `fleet` (so a failure half-way still stops them all)."""
    binary = shutil.which("redis-server") or "redis-server"
    for i in range(count):
        port = free_port()
        d = workdir / f"redis-{i}"
        d.mkdir()
        child = Child(f"redis-{port}", [
            binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--maxmemory", "1mb", "--hz", "1", "--daemonize", "no", "--dir", str(d),
            "--logfile", "",
        ], cwd=d).start()
        fleet.append((port, child))
    for port, child in fleet:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or not child.alive():
                raise RuntimeError(f"redis-server on {port} did not start")
            time.sleep(0.05)


def _prepare_postgres(topo: Topology, max_connections: int) -> None:
    """The replica is not needed and would refuse a primary with more connections."""
    topo.replica.stop()
    with open(topo.primary.data_dir / "postgresql.auto.conf", "a") as conf:
        conf.write(f"max_connections = {max_connections}\n")
    topo.primary.stop()
    topo.primary.start()


def _config(n: int, port: int, interval: float, topo: Topology, redis_ports: list[int],
            password_file: Path) -> tuple[str, int, int]:
    n_pg = max(1, round(n / 11))
    n_redis = n - n_pg
    clusters = []
    pg_left, redis_left, r = n_pg, n_redis, 0
    i = 0
    while pg_left or redis_left:
        cluster: dict[str, Any] = {"name": f"c{i:04d}"}
        if pg_left:
            cluster["postgres"] = [{
                "name": "pg",
                "dsn": f"postgresql://monitor@{HOST}:{topo.primary.port}/postgres",
                "password_file": str(password_file)}]
            pg_left -= 1
        take = min(10, redis_left)
        if take:
            cluster["redis"] = []
            for j in range(take):
                port_r = redis_ports[r % len(redis_ports)]
                cluster["redis"].append({"name": f"r{j}", "url": f"redis://{HOST}:{port_r}/0"})
                r += 1
            redis_left -= take
        clusters.append(cluster)
        i += 1
    doc = {"listen": f"{HOST}:{port}", "poll_interval": interval, "log_level": "warning",
           "clusters": clusters}
    return yaml.safe_dump(doc, sort_keys=False), n_pg, n_redis


def _scrape(url: str, gzip: bool = True) -> tuple[float, int, bytes]:
    t0 = time.perf_counter()
    status, body = http_get(url, timeout=60, gzip=gzip)
    return (time.perf_counter() - t0) * 1000, status, body


def _analyze(records: list[dict[str, Any]], t0: float, t1: float) -> dict[str, Any]:
    polls = [r for r in records if "job" in r and "start" in r and t0 <= r["due"] < t1]
    dropped = [r for r in records if r.get("event") in ("missed", "skipped")
               and t0 <= r["due"] < t1]
    late = [r["start"] - r["due"] for r in polls]
    durations = [r["end"] - r["start"] for r in polls]
    on_time = sum(1 for x in late if x <= ON_TIME_S)
    merged = sum(1 for r in polls if r.get("coalesced", 1) > 1)
    total = len(polls) + len(dropped)
    renders = [r for r in records if "render" in r and t0 <= r["at"] < t1]
    by_kind: dict[str, dict[str, float]] = {}
    for kind in sorted({r["kind"] for r in polls}):
        mine = [r for r in polls if r["kind"] == kind]
        d = [r["end"] - r["start"] for r in mine]
        by_kind[kind] = {"polls": len(mine), "duration_p50_ms": 1000 * percentile(d, 50),
                         "duration_p99_ms": 1000 * percentile(d, 99),
                         "down": sum(1 for r in mine if r["up"] is False)}
    # what delayed the late ones: a render holding the GIL, or a crowd of polls due at once
    windows = [(r["at"] - r["render"], r["at"]) for r in records if "render" in r]
    late_polls = [r for r in polls if r["start"] - r["due"] > ON_TIME_S]
    in_render = sum(1 for r in late_polls if any(a <= r["due"] <= b for a, b in windows))
    per_second = Counter(int(r["due"]) for r in polls)
    return {
        "late_due_during_render": in_render,
        "busiest_second_polls_due": max(per_second.values(), default=0),
        "polls": len(polls),
        "dropped": len(dropped),
        "coalesced": merged,
        "on_time": on_time - merged,
        "on_time_rate": (on_time - merged) / total if total else float("nan"),
        "late_p50_ms": 1000 * percentile(late, 50),
        "late_p99_ms": 1000 * percentile(late, 99),
        "late_max_ms": 1000 * max(late, default=float("nan")),
        "duration_p50_ms": 1000 * percentile(durations, 50),
        "duration_p99_ms": 1000 * percentile(durations, 99),
        "down_polls": sum(1 for r in polls if r["up"] is False),
        "by_kind": by_kind,
        "renders": len(renders),
        "render_ms_median": 1000 * statistics.median([r["render"] for r in renders])
        if renders else float("nan"),
        "render_ms_max": 1000 * max((r["render"] for r in renders), default=float("nan")),
    }


def run_level(n: int, topo: Topology, redis_ports: list[int], workdir: Path, *,
              interval: float, window: float, spread: bool = False,
              profile_s: float = 0.0) -> dict[str, Any]:
    port = free_port()
    pw = topo.write_password_files()["postgres"]
    text, n_pg, n_redis = _config(n, port, interval, topo, redis_ports, pw)
    tag = f"{n}{'-spread' if spread else ''}"
    cfg = workdir / f"tierwatch-{tag}.yaml"
    cfg.write_text(text)
    records_path = workdir / f"polls-{tag}.jsonl"
    argv = [PYTHON, str(REPO / "bench" / "twprobe.py"), str(records_path), "-c", str(cfg)]
    if spread:
        argv.append("--spread-first-polls")
    load_start = loadavg()
    daemon = Child(f"tierwatch({tag})", argv, log_path=workdir / f"tierwatch-{tag}.log")
    daemon.start()
    url = f"http://{HOST}:{port}"
    result: dict[str, Any] = {"targets": n, "postgres": n_pg, "redis": n_redis,
                              "redis_servers": min(n_redis, len(redis_ports)),
                              "interval": interval, "window": window, "spread": spread}
    try:
        t_ready = time.monotonic()
        wait_http(url + "/readyz", daemon, timeout=max(60.0, 3 * interval))
        result["ready_s"] = time.monotonic() - t_ready
        time.sleep(interval + 1)  # warm-up: the first cycle opens every connection
        s0 = daemon.sample()
        t0 = time.time()
        scrapes: list[float] = []
        gz_bytes = 0
        while time.time() - t0 < window:
            ms, status, body = _scrape(url + "/metrics")
            if status == 200:
                scrapes.append(ms)
                gz_bytes = len(body)
            time.sleep(max(0.0, min(interval, window - (time.time() - t0))))
        t1 = time.time()
        s1 = daemon.sample()
        _, _, plain = _scrape(url + "/metrics", gzip=False)
        result.update({
            "cpu_percent": 100 * (s1.cpu_s - s0.cpu_s) / (s1.at - s0.at),
            "rss_mb": s1.rss / 2**20,
            "peak_rss_mb": s1.hwm / 2**20,
            "metrics_bytes": len(plain),
            "metrics_gzip_bytes": gz_bytes,
            "series": series_count(plain),
            "scrape_ms": scrapes,
            "load_start": load_start,
            "load_end": loadavg(),
        })
        if profile_s > 0:
            result["profile"] = profile(daemon.pid, profile_s, url + "/metrics", workdir, tag)
    finally:
        daemon.stop(timeout=30)
    records = [json.loads(line) for line in records_path.read_text().splitlines() if line]
    result.update(_analyze(records, t0, t1 - ON_TIME_S))
    result["late_polls"] = [  # the late ones, kept for the doc: due time, lateness, kind
        (round(r["due"] - t0, 3), round(r["start"] - r["due"], 3), r["kind"])
        for r in records if "job" in r and "start" in r and t0 <= r["due"] < t1 - ON_TIME_S
        and r["start"] - r["due"] > ON_TIME_S][:200]
    result["render_times"] = [(round(r["at"] - r["render"] - t0, 3), round(r["render"], 3))
                         for r in records if "render" in r and t0 <= r["at"] < t1]
    log(f"{tag} targets: on time {result['on_time']}/{result['polls'] + result['dropped']} "
        f"late p99 {result['late_p99_ms']:.0f} ms max {result['late_max_ms']:.0f} ms, "
        f"poll p99 {result['duration_p99_ms']:.0f} ms, CPU {result['cpu_percent']:.1f} %, "
        f"RSS {result['rss_mb']:.1f} MB, /metrics {result['metrics_bytes'] / 1024:.0f} KiB "
        f"render {result['render_ms_median']:.1f} ms (load {result['load_end'][0]:.2f})")
    return result


# --------------------------------------------------------------------------- profile

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "/lib/python3.11/", str(REPO) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def profile(pid: int, seconds: float, metrics_url: str, workdir: Path, tag: str
            ) -> dict[str, Any]:
    """py-spy samples the running daemon while a client scrapes every 5 s."""
    spy = py_spy()
    if spy is None:
        return {"error": "py-spy not available"}
    raw = workdir / f"profile-{tag}.txt"
    proc = subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(max(1, round(seconds))),
                             "-r", "100", "--threads", "-f", "raw", "-o", str(raw)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    scrape_ms = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and proc.poll() is None:
        scrape_ms.append(_scrape(metrics_url)[0])
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
    _, err = proc.communicate(timeout=seconds + 60)
    if not raw.exists():
        return {"error": f"py-spy failed: {err.decode(errors='replace')[-300:]}"}
    return summarize_profile(raw.read_text()) | {"scrape_ms": scrape_ms, "raw": raw.read_text()}


def summarize_profile(text: str, top: int = 12) -> dict[str, Any]:
    """Samples per thread group (event loop, HTTP) and the top functions by self and by
    inclusive samples, from py-spy's raw (collapsed stack) output."""
    groups: dict[str, dict[str, Counter[str]]] = {}
    totals: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [_short(f) for f in stack.split(";")[1:]]  # [0] names the thread
        joined = ";".join(frames)
        if "process_request_thread" in joined or "_Handler" in joined or "do_GET" in joined:
            group = "http threads"
        elif "run_forever" in joined or "_run_once" in joined:
            group = "event loop"
        else:
            group = "other"
        totals[group] += count
        g = groups.setdefault(group, {"self": Counter(), "inclusive": Counter()})
        if frames:
            g["self"][frames[-1]] += count
        for f in set(frames):
            g["inclusive"][f] += count
    out: dict[str, Any] = {"samples": dict(totals)}
    for name, g in groups.items():
        out[name] = {"self": g["self"].most_common(top),
                     "inclusive": g["inclusive"].most_common(top)}
    return out


# --------------------------------------------------------------------------- driver


def run(quick: bool = False, levels: tuple[int, ...] | None = None,
        out_dir: Path | None = None, redis_servers: int = 250, interval: float | None = None,
        window: float | None = None, spread_check: bool = True,
        profile_s: float | None = None) -> dict[str, Any]:
    levels = levels or ((20,) if quick else FULL_LEVELS)
    interval = interval or (2.0 if quick else 15.0)
    window = window or (3.0 if quick else 4 * interval)
    profile_s = profile_s if profile_s is not None else (2.0 if quick else 2 * interval)
    n_redis_max = max(n - max(1, round(n / 11)) for n in levels)
    n_pg_max = max(max(1, round(n / 11)) for n in levels)
    servers = min(redis_servers, n_redis_max) if not quick else min(5, n_redis_max)
    result: dict[str, Any] = {"quick": quick, "interval": interval, "window": window,
                              "on_time_s": ON_TIME_S, "levels": []}
    topo = Topology().start()
    assert topo.workdir is not None
    workdir = topo.workdir / "scale"
    workdir.mkdir()
    fleet: list[tuple[int, Child]] = []
    try:
        _prepare_postgres(topo, 2 * n_pg_max + 20)
        log(f"scale: starting {servers} redis-server processes")
        _redis_fleet(servers, workdir, fleet)
        ports = [p for p, _ in fleet]
        for n in levels:
            biggest = n == max(levels)
            level = run_level(n, topo, ports, workdir, interval=interval, window=window,
                              profile_s=profile_s if biggest else 0.0)
            result["levels"].append(level)
        worst = result["levels"][-1]
        if spread_check and worst["on_time_rate"] < 1.0:
            # the candidate fix, measured at the largest count
            result["spread"] = run_level(max(levels), topo, ports, workdir,
                                         interval=interval, window=window, spread=True)
        result["rss_per_target_kb"] = _slope(result["levels"])
        result["import_rss"] = json.loads(subprocess.run(
            [PYTHON, "-m", "bench.importmem"], cwd=REPO, capture_output=True, text=True,
            check=True).stdout)
        on_time = [lv["targets"] for lv in result["levels"] if lv["on_time_rate"] == 1.0]
        result["largest_all_on_time"] = max(on_time, default=0)
    finally:
        for _, child in fleet:  # at --hz 1 a Redis takes up to 1 s to act on SIGTERM
            child.terminate()
        for _, child in fleet:
            child.stop()
        topo.stop()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for lv in result["levels"]:  # the raw stacks beside the JSON, compressed
            prof = lv.get("profile", {})
            if "raw" in prof:
                name = f"profile-{lv['targets']}{'-quick' if quick else ''}.txt.gz"
                (out_dir / name).write_bytes(gzip.compress(prof.pop("raw").encode()))
                prof["raw_file"] = name
        (out_dir / ("scale-quick.json" if quick else "scale.json")).write_text(
            json.dumps(result, indent=2, default=str))
    return result


def _slope(levels: list[dict[str, Any]]) -> float:
    """Least-squares RSS growth per target, in KiB."""
    xs = [lv["targets"] for lv in levels]
    ys = [lv["rss_mb"] * 1024 for lv in levels]
    if len(xs) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def table(result: dict[str, Any]) -> str:
    lines = [
        "| targets (PG + Redis) | on time | late p99 / max ms | poll p50 / p99 ms | "
        "CPU % of a core | RSS MB | /metrics KiB (gzip) | series | render ms | "
        "scrape p50 ms | load avg |",
        "|" + "---|" * 11,
    ]
    rows = list(result["levels"])
    if "spread" in result:
        rows.append(result["spread"])
    for lv in rows:
        name = f"{lv['targets']} ({lv['postgres']} + {lv['redis']})"
        if lv.get("spread"):
            name += ", first polls spread"
        scr = statistics.median(lv["scrape_ms"]) if lv["scrape_ms"] else math.nan
        lines.append(
            f"| {name} | {lv['on_time']}/{lv['polls'] + lv['dropped']} "
            f"({100 * lv['on_time_rate']:.1f} %) | {lv['late_p99_ms']:.0f} / "
            f"{lv['late_max_ms']:.0f} | {lv['duration_p50_ms']:.1f} / "
            f"{lv['duration_p99_ms']:.1f} | {lv['cpu_percent']:.1f} | {lv['rss_mb']:.1f} | "
            f"{lv['metrics_bytes'] / 1024:.0f} ({lv['metrics_gzip_bytes'] / 1024:.0f}) | "
            f"{lv['series']} | {lv['render_ms_median']:.1f} | {scr:.1f} | "
            f"{lv['load_start'][0]:.2f}–{lv['load_end'][0]:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--levels", type=lambda s: tuple(int(x) for x in s.split(",")))
    parser.add_argument("--interval", type=float)
    parser.add_argument("--window", type=float)
    parser.add_argument("--redis-servers", type=int, default=250)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    res = run(quick=args.quick, levels=args.levels, out_dir=args.out,
              redis_servers=args.redis_servers, interval=args.interval, window=args.window)
    print(table(res))

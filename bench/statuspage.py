"""The status page at `/`: its render time and its HTTP answer time against target count.

No server is involved, by design: the page is judged from the snapshot alone. The snapshots
are built in memory in the shape of a real poll of the test topology (a primary, a replica,
a PgBouncer, a Redis per cluster, with as many series as each of those has in a real
scrape, bench/runs/*/tierwatch-exposition.txt), copied into clusters of four up to N
targets. Two figures per N:

- `page`: exporter.statuspage.page() alone (group by cluster, one routing report per
  cluster, HTML), the work the HTTP thread does for each `/`;
- `http`: GET / on exporter.httpserver.HttpServer over one keep-alive loopback connection
  (the client runs in the same process, so its GIL hand-offs count against the server).

Goal (issue 16): p99 under 20 ms at 100 targets.

    python -m bench.statuspage [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bench.common import HOST, free_port, percentile
from exporter import catalogue as c
from exporter import httpserver, statuspage
from exporter.model import Kind, Metric, TargetId
from exporter.snapshot import TargetSnapshot

GOAL_TARGETS, GOAL_P99_MS = 100, 20.0
DATABASES = ("postgres", "app", "template1")
STATES = ("active", "idle", "idle in transaction", "idle in transaction (aborted)",
          "fastpath function call", "disabled")


def _postgres(replica: bool) -> tuple[Metric, ...]:
    series = [c.PG_IN_RECOVERY(1 if replica else 0), c.PG_MAX_CONNECTIONS(50),
              c.PG_OLDEST_TRANSACTION(0.0)]
    series += [c.PG_CONNECTIONS(2, state) for state in STATES]
    for db in DATABASES:
        series += [c.PG_BLOCKS_HIT(10_000, db), c.PG_BLOCKS_READ(300, db),
                   c.PG_CACHE_HIT_RATIO(0.97, db)]
    series += [c.PG_APPLICATION_CONNECTIONS(1, f"app-{i}") for i in range(10)]
    if replica:
        series += [c.PG_REPLICA_LAG_SECONDS(0.02), c.PG_REPLICA_LAG_BYTES(0),
                   c.PG_WAL_RECEIVER_UP(1), c.PG_REPLAY_PAUSED(0)]
    else:
        series += [c.PG_REPLICAS_STREAMING(1)]
        series += [c.PG_REPLICATION_LAG_BYTES(0, "replica-1", s)
                   for s in ("sent", "write", "flush", "replay")]
        series += [c.PG_REPLICATION_LAG_SECONDS(0.0, "replica-1", s)
                   for s in ("write", "flush", "replay")]
    return tuple(series)


def _pgbouncer() -> tuple[Metric, ...]:
    series: list[Metric] = []
    for db in DATABASES:
        series += [c.BOUNCER_CLIENTS(3, db, "app", "active"),
                   c.BOUNCER_CLIENTS(1, db, "app", "waiting"),
                   c.BOUNCER_MAX_WAIT(0.01, db, "app"),
                   c.BOUNCER_SATURATION(0.4, db, "app"), c.BOUNCER_POOL_SIZE(20, db)]
        series += [c.BOUNCER_SERVERS(1, db, "app", s)
                   for s in ("active", "idle", "used", "tested", "login")]
    return tuple(series)


def _redis() -> tuple[Metric, ...]:
    return (c.REDIS_HITS(9_000), c.REDIS_MISSES(1_000), c.REDIS_HIT_RATIO(0.9),
            c.REDIS_EVICTED(0), c.REDIS_EXPIRED(5), c.REDIS_MEMORY_USED(3 * 2**20),
            c.REDIS_MEMORY_MAX(64 * 2**20), c.REDIS_POLICY(1, "allkeys-lru"),
            c.REDIS_CLIENTS(4), c.REDIS_MAX_CLIENTS(10_000),
            c.REDIS_REJECTED(0), c.REDIS_KEYS(1_000, "db0"), c.REDIS_KEYS_EXPIRING(10, "db0"))


SHAPES = (("primary", Kind.POSTGRES, _postgres(False)), ("replica-1", Kind.POSTGRES,
          _postgres(True)), ("bouncer", Kind.PGBOUNCER, _pgbouncer()),
          ("cache", Kind.REDIS, _redis()))


class Store:
    """What the page reads of a SnapshotStore (and what /readyz, /metrics ask, for HTTP)."""

    def __init__(self, count: int, now: float) -> None:
        snaps = {}
        for i in range(count):
            name, kind, metrics = SHAPES[i % len(SHAPES)]
            target = TargetId(f"cluster-{i // len(SHAPES):04d}", name, kind)
            snaps[target] = TargetSnapshot(
                target=target, up=True, polled_at=now - 0.3, metrics=metrics,
                daemon_metrics=(c.UP(1, kind.value),), interval=15.0)
        self.snapshots = MappingProxyType(snaps)
        self.expected = frozenset(snaps)

    def ready(self) -> bool:
        return True

    def body(self, gzipped: bool = False) -> bytes:
        return b""


def _stats(times: list[float]) -> dict[str, float]:
    ms = [t * 1000 for t in times]
    return {"p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 99), "max_ms": max(ms),
            "n": len(ms)}


def time_page(store: Store, runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        statuspage.page(store, 1.0, None)
        times.append(time.perf_counter() - t0)
    return _stats(times)


def time_http(store: Store, runs: int) -> dict[str, Any]:
    port = free_port()
    server = httpserver.HttpServer(HOST, port, store, lambda: True)  # type: ignore[arg-type]
    server.start()
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    times, size = [], 0
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            conn.request("GET", "/")
            response = conn.getresponse()
            size = len(response.read())
            times.append(time.perf_counter() - t0)
            assert response.status == 200, response.status
    finally:
        conn.close()
        server.stop()
    return {**_stats(times), "bytes": size}


def run(quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    counts = (4, 100) if quick else (4, 20, 100, 500, 1000)
    rows: list[dict[str, Any]] = []
    for n in counts:
        runs = 50 if quick else max(200, 20_000 // n)
        store = Store(n, time.time())
        time_page(store, 5)  # warm-up: imports, caches
        rows.append({"targets": n, "page": time_page(store, runs),
                     "http": time_http(store, runs)})
    goal = next(r for r in rows if r["targets"] == GOAL_TARGETS)
    result: dict[str, Any] = {"rows": rows, "quick": quick,
                              "goal_holds": goal["http"]["p99_ms"] < GOAL_P99_MS}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        name = "statuspage-quick.json" if quick else "statuspage.json"
        (out_dir / name).write_text(json.dumps(result, indent=2))
    return result


def table(result: dict[str, Any]) -> str:
    lines = ["| targets | page KiB | render p50 ms | render p99 ms | GET / p50 ms | "
             "GET / p99 ms | requests |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        p, h = r["page"], r["http"]
        lines.append(f"| {r['targets']} | {h['bytes'] / 1024:.0f} | {p['p50_ms']:.2f} | "
                     f"{p['p99_ms']:.2f} | {h['p50_ms']:.2f} | {h['p99_ms']:.2f} | {h['n']} |")
    return "\n".join(lines)


def goal_line(result: dict[str, Any]) -> str:
    row = next(r for r in result["rows"] if r["targets"] == GOAL_TARGETS)
    p99 = row["http"]["p99_ms"]
    return (f"- status page p99 < {GOAL_P99_MS:g} ms at {GOAL_TARGETS} targets: "
            f"{'holds' if p99 < GOAL_P99_MS else 'FAILS'} (GET / p99 {p99:.2f} ms)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.statuspage",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="tierwatch-bench-"))
    result = run(args.quick, out)
    print(table(result))
    print(goal_line(result))
    return 0 if result["goal_holds"] else 1


if __name__ == "__main__":
    sys.exit(main())

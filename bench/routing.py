"""Read-routing checks at 100 targets: latency per check, answered from the snapshot only.

A SnapshotStore holds 100 targets (25 clusters of primary, replica, PgBouncer and Redis;
each PostgreSQL snapshot carries 150 series, about twice a real one, with the series a check
reads placed last, so every lookup walks the whole snapshot). No monitored server exists:
an answer cannot cost one anything. Two figures per check kind:

- `judge`: exporter.routeapi.answer() alone, in this process (the decision and its JSON);
- `http`: the production HttpServer in a child process, one keep-alive client asking
  sequentially (what one HAProxy check costs end to end, loopback included).

Issue 13's goal: p99 under 5 ms per check.

    python -m bench.routing [--quick] [--out DIR]
    python -m bench.routing serve PORT TARGETS   (the child)
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import HOST, PYTHON, REPO, Child, free_port, loadavg, log, percentile, wait_http

TARGETS = 100
GOAL_MS = 5.0
PATHS = {
    "replica": "/replica/c{n}/replica-1?max_lag=1s",
    "primary": "/primary/c{n}/primary",
    "read-only": "/read-only/c{n}/replica-1",
    "cluster": "/cluster/c{n}",
    "unknown (404)": "/replica/c{n}/nobody",
}


def build_store(targets: int = TARGETS) -> Any:
    """A store of `targets` fresh targets (a multiple of 4), every snapshot just polled."""
    from exporter import catalogue as c
    from exporter.model import Kind, TargetId
    from exporter.snapshot import SnapshotStore, TargetSnapshot

    store = SnapshotStore(lambda _s, _d: b"")
    snapshots = []
    now = time.time()
    for n in range(targets // 4):
        cluster = f"c{n}"
        filler = [c.PG_BLOCKS_HIT(i, f"db{i}") for i in range(147)]
        for name, recovery in (("primary", 0), ("replica-1", 1)):
            metrics = [*filler, c.PG_IN_RECOVERY(recovery)]
            if recovery:
                metrics += [c.PG_REPLICA_LAG_BYTES(0), c.PG_REPLICA_LAG_SECONDS(0.05)]
            snapshots.append(TargetSnapshot(TargetId(cluster, name, Kind.POSTGRES), True, now,
                                            tuple(metrics), (), interval=1.0))
        snapshots.append(TargetSnapshot(TargetId(cluster, "bouncer", Kind.PGBOUNCER), True, now,
                                        (c.BOUNCER_CLIENTS(0, "app", "app", "waiting"),), (),
                                        interval=1.0))
        snapshots.append(TargetSnapshot(TargetId(cluster, "cache", Kind.REDIS), True, now,
                                        (c.REDIS_HIT_RATIO(0.9), c.REDIS_MEMORY_USED(1e6)), (),
                                        interval=1.0))
    store.expect(s.target for s in snapshots)
    for snapshot in snapshots:
        store.publish(snapshot)
    return store


def _refresh(store: Any) -> None:
    """Publish every snapshot again with polled_at now, as the 1 s polls would."""
    import dataclasses

    now = time.time()
    for snapshot in list(store.snapshots.values()):
        store.publish(dataclasses.replace(snapshot, polled_at=now))


def serve(port: int, targets: int) -> None:
    from exporter.httpserver import HttpServer

    store = build_store(targets)
    server = HttpServer(HOST, port, store, lambda: True)
    server.start()
    while True:  # keep the data fresh: a stale snapshot would answer 503 (still a figure)
        time.sleep(1.0)
        _refresh(store)


def _stats(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 99),
            "max_ms": max(ms)}


def judge_times(store: Any, count: int) -> dict[str, dict[str, float]]:
    from exporter.config import Routing
    from exporter.routeapi import answer

    limits = Routing()
    result = {}
    clusters = TARGETS // 4
    for kind, template in PATHS.items():
        times = []
        for i in range(count):
            path = template.format(n=i % clusters)
            began = time.perf_counter()
            answer(path, store, limits, time.time())
            times.append((time.perf_counter() - began) * 1000)
        result[kind] = _stats(times)
    return result


def http_times(port: int, count: int) -> dict[str, dict[str, Any]]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    result: dict[str, dict[str, Any]] = {}
    clusters = TARGETS // 4
    for kind, template in PATHS.items():
        times, statuses = [], set()
        for i in range(count):
            began = time.perf_counter()
            conn.request("GET", template.format(n=i % clusters))
            response = conn.getresponse()
            response.read()
            times.append((time.perf_counter() - began) * 1000)
            statuses.add(response.status)
        result[kind] = {**_stats(times), "statuses": sorted(statuses)}
    conn.close()
    return result


def run(quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    count = 500 if quick else 5000
    store = build_store()
    judge_times(store, 50)  # warm-up: imports, first JSON encoding
    result: dict[str, Any] = {"targets": TARGETS, "requests_per_kind": count,
                              "load_before": loadavg()[0], "quick": quick}
    result["judge"] = judge_times(store, count)
    port = free_port()
    child = Child("routing http", [PYTHON, "-m", "bench.routing", "serve", str(port),
                                   str(TARGETS)], cwd=REPO).start()
    try:
        wait_http(f"http://{HOST}:{port}/healthz", child)
        http_times(port, 50)
        result["http"] = http_times(port, count)
    finally:
        child.stop()
    result["load_after"] = loadavg()[0]
    worst = max(m["p99_ms"] for m in result["http"].values())
    result["worst_http_p99_ms"] = worst
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        name = "routing-quick.json" if quick else "routing.json"
        (out_dir / name).write_text(json.dumps(result, indent=2))
    return result


def table(result: dict[str, Any]) -> str:
    lines = [f"{result['targets']} targets, {result['requests_per_kind']} checks per kind, "
             f"load {result['load_before']:.2f} before / {result['load_after']:.2f} after\n",
             "| check | judge p50 / p99 ms | http p50 / p99 / max ms | http status |",
             "|---|---|---|---|"]
    for kind in PATHS:
        j, h = result["judge"][kind], result["http"][kind]
        lines.append(f"| {kind} | {j['p50_ms']:.3f} / {j['p99_ms']:.3f} | "
                     f"{h['p50_ms']:.3f} / {h['p99_ms']:.3f} / {h['max_ms']:.1f} | "
                     f"{', '.join(map(str, h['statuses']))} |")
    return "\n".join(lines)


def goal(result: dict[str, Any]) -> str:
    worst = result["worst_http_p99_ms"]
    return (f"- routing check p99 < {GOAL_MS:g} ms at {result['targets']} targets: "
            f"{'holds' if worst < GOAL_MS else 'FAILS'} (worst http p99 {worst:.3f} ms)")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if len(argv) == 3 and argv[0] == "serve":
        serve(int(argv[1]), int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.routing")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    log("routing checks at 100 targets")
    result = run(quick=args.quick, out_dir=args.out)
    print(table(result))
    print(goal(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

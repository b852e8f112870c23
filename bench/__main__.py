"""`bench/run` / `make bench`: every figure of docs/benchmarks.md, in one run.

    bench/run [--quick] [--only sidebyside|http|scale|statuspage|routing] [--out DIR]
              [--max-load 1.0] [--wait 600]

Installs what is missing (Debian's peer exporters and wrk with RUNLEVEL=1, PyPI's
pgbouncer exporter into .venv/peers, py-spy into the venv), waits up to --wait seconds for
the 1-min load average to drop below --max-load (the figures are real-time: the load found
is printed beside them), then runs the side-by-side comparison and the scale ladder, writes
JSON to DIR (default bench/results/, or a temp dir with --quick) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import httpproto, renderbench, routing, scale, sidebyside, statuspage
from bench.common import REPO, ensure_pypi_bouncer_exporter, ensure_tools, log, wait_for_quiet

GOALS_TEXT = """\
Goals (issue 8), from this run:"""


def goals(side: dict[str, Any] | None, sc: dict[str, Any] | None) -> list[str]:
    """One line per goal: holds / fails, with the figure it is judged on."""
    lines = []
    if side and "exporters" in side:
        rows = {r["name"]: r for r in side["exporters"]}
        tw = rows["tierwatch"]
        ls = tw["load_per_scrape"]
        per_scrape = max(abs(ls.get(k, 0.0)) for k in ls) if ls else 0.0
        lines.append(f"- scrape queries no server: {'holds' if per_scrape < 0.01 else 'FAILS'}"
                     f" (largest server-side count per scrape {per_scrape:.4f})")
        lm = tw["load_per_min"]
        conns = lm["pg_sessions"] + lm["bouncer_logins"] + lm["redis_connections"]
        lines.append(f"- 0 new connections per minute after warm-up: "
                     f"{'holds' if conns == 0 else 'FAILS'} ({conns:g}/min)")
        ratios = side.get("ratios", {}).get("redis_exporter")
        if ratios:
            for mode, label in (("seq", "sequential"),
                                ("one_core", "sequential, client and exporter on one core"),
                                ("c16", "16 concurrent")):
                p99 = ratios[f"{mode}_p99"]["median"]
                rps = ratios[f"{mode}_rps"]["median"]
                ok = p99 <= 1 / 3 and rps >= 2
                lines.append(f"- {label}: p99 ≤ 1/3 and ≥ 2× scrapes/s of redis_exporter: "
                             f"{'holds' if ok else 'FAILS'} (p99 ratio {p99:.3f}, "
                             f"scrapes/s ratio {rps:.1f})")
    if sc and sc.get("quick"):
        lines.append("- scale goals: not judged on the quick run (figures only)")
    elif sc and sc.get("levels"):
        best = sc.get("largest_all_on_time", 0)
        interval = sc["interval"]
        lines.append(f"- ≥ 500 targets on time every {interval:g} s: "
                     f"{'holds' if best >= 500 else 'FAILS'} (largest count with every poll "
                     f"on time: {best})")
        twenty = [lv for lv in sc["levels"] if lv["targets"] == 20]
        if twenty:
            rss = twenty[0]["rss_mb"]
            lines.append(f"- RSS ≤ 60 MB at 20 targets: {'holds' if rss <= 60 else 'FAILS'} "
                         f"({rss:.1f} MB)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and fast (make test)")
    parser.add_argument("--only", choices=("sidebyside", "http", "scale", "statuspage",
                                               "routing"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--max-load", type=float, default=1.0)
    parser.add_argument("--wait", type=float, default=None,
                        help="seconds to wait for a quiet machine (default 600, quick 0)")
    parser.add_argument("--levels", type=lambda s: tuple(int(x) for x in s.split(",")))
    args = parser.parse_args(argv)
    out = args.out or (Path(tempfile.mkdtemp(prefix="tierwatch-bench-")) if args.quick
                       else REPO / "bench" / "results")
    missing = ensure_tools()
    with_peers = not any(m.startswith("prometheus-") for m in missing)
    if with_peers and ensure_pypi_bouncer_exporter() is None:
        log("PyPI prometheus-pgbouncer-exporter unavailable: it is left out")
    if missing:
        log(f"missing (figures without them): {', '.join(missing)}")
    wait = args.wait if args.wait is not None else (0.0 if args.quick else 600.0)
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "python": platform.python_version(),
            "machine": platform.machine(), "missing": missing,
            "cpus": len(__import__("os").sched_getaffinity(0))}
    side = sc = None
    if args.only in (None, "sidebyside"):
        meta["load_sidebyside"] = wait_for_quiet(args.max_load, wait)
        side = sidebyside.run(quick=args.quick, with_peers=with_peers, out_dir=out)
    http = None
    if args.only in (None, "http"):
        meta["load_http"] = wait_for_quiet(args.max_load, wait)
        http = httpproto.run_standalone(quick=args.quick, out_dir=out)
    if args.only in (None, "scale"):
        meta["load_scale"] = wait_for_quiet(args.max_load, wait)
        sc = scale.run(quick=args.quick, out_dir=out, levels=args.levels)
    page = None
    if args.only in (None, "statuspage"):
        meta["load_statuspage"] = wait_for_quiet(args.max_load, wait)
        page = statuspage.run(quick=args.quick, out_dir=out)
    checks = None
    if args.only in (None, "routing"):
        meta["load_routing"] = wait_for_quiet(args.max_load, wait)
        checks = routing.run(quick=args.quick, out_dir=out)
    summary = {"meta": meta, "goals": goals(side, sc)
               + ([statuspage.goal_line(page)] if page else [])
               + ([routing.goal(checks)] if checks else [])}
    out.mkdir(parents=True, exist_ok=True)
    name = "summary" + (f"-{args.only}" if args.only else "") + ("-quick" if args.quick else "")
    (out / f"{name}.json").write_text(
        json.dumps(summary, indent=2))
    print(f"# tierwatch benchmarks ({'quick' if args.quick else 'full'} run, "
          f"{meta['started']}, results in {out})\n")
    if side:
        print("## Side by side\n")
        for note in side.get("notes", []):
            print(f"- {note}")
        print(f"\nload average before/after: {side['load_before']} / {side.get('load_after')}\n")
        print(sidebyside.table(side))
        print()
        print(sidebyside.ratio_lines(side))
        print()
        if "render" in side:
            print("### Render time against target count\n")
            print(renderbench.table(side["render"]))
            print()
    if http:
        print("## The HTTP server alone: today's threaded server and the asyncio candidate\n")
        print(httpproto.table(http))
        print()
    if sc:
        print("## Scale\n")
        print(scale.table(sc))
        print(f"\nRSS growth per target: {sc.get('rss_per_target_kb', float('nan')):.1f} KiB; "
              f"largest count with every poll on time: {sc.get('largest_all_on_time')}\n")
    if page:
        print("## The status page at /\n")
        print(statuspage.table(page))
        print()
    if checks:
        print("## Read-routing checks\n")
        print(routing.table(checks))
        print()
    print(GOALS_TEXT)
    print("\n".join(summary["goals"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Render time against target count, and a candidate faster renderer checked byte for byte.

Real snapshots first: one poll of each of the topology's four targets through the daemon's
own TargetPoller. They are then copied under new cluster names up to N targets, and
`exporter.render.render` renders them (the median of several runs). `fast_render` below is
the candidate fix: the same exposition, byte for byte (asserted), without building
prometheus_client Sample objects and re-checking every metric and label name per sample.
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter import catalogue as c
from exporter.catalogue import MetricSpec
from exporter.model import Metric, TargetId
from exporter.render import render
from exporter.snapshot import TargetSnapshot


def _esc(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _family_head(spec: MetricSpec) -> str:
    name = spec.name
    doc = spec.help.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {spec.type}\n"


def fast_render(snapshots: Iterable[TargetSnapshot], daemon: Iterable[Metric] = ()) -> bytes:
    """The exposition `render` produces, built as strings directly (labels sorted by name,
    as prometheus_client sorts them; values through its floatToGoString)."""
    snaps = sorted(snapshots, key=lambda s: (s.target.cluster, s.target.target))
    families: dict[str, tuple[MetricSpec, list[str]]] = {}
    build = c.BUILD_INFO
    families[build.name] = (build, [
        f'{build.name}{{python_version="{platform.python_version()}",'
        f'version="{_esc(__version__)}"}} 1.0\n'])
    order_cache: dict[tuple[str, ...], list[int]] = {}

    def line(spec: MetricSpec, names: tuple[str, ...], values: tuple[str, ...],
             value: float) -> str:
        order = order_cache.get(names)
        if order is None:
            order = order_cache[names] = sorted(range(len(names)), key=names.__getitem__)
        labels = ",".join(f'{names[i]}="{_esc(values[i])}"' for i in order)
        if labels:
            return f"{spec.name}{{{labels}}} {floatToGoString(value)}\n"
        return f"{spec.name} {floatToGoString(value)}\n"

    for m in daemon:
        families.setdefault(m.spec.name, (m.spec, []))[1].append(
            line(m.spec, m.spec.labels, m.labels, m.value))
    hist: list[str] = []
    hname = c.POLL_DURATION.name
    for snap in snaps:
        base_names = ("cluster", "target")
        base_values = (snap.target.cluster, snap.target.target)
        for m in (*snap.daemon_metrics, *snap.metrics):
            families.setdefault(m.spec.name, (m.spec, []))[1].append(
                line(m.spec, base_names + m.spec.labels, base_values + m.labels, m.value))
        cl, tg, kd = _esc(snap.target.cluster), _esc(snap.target.target), snap.target.kind.value
        ident = f'cluster="{cl}",kind="{kd}"'
        for sample in snap.poll_duration:  # the samples of selfmetrics.PollStats
            le = f',le="{sample.labels["le"]}"' if "le" in sample.labels else ""
            hist.append(f'{sample.name}{{{ident}{le},target="{tg}"}} '
                        f"{floatToGoString(sample.value)}\n")
    if hist:
        families[hname] = (c.POLL_DURATION, hist)
    out: list[str] = []
    for spec, lines in families.values():
        out.append(_family_head(spec))
        out.extend(lines)
    return "".join(out).encode()


async def _poll_once(config_text: str) -> list[TargetSnapshot]:
    from exporter.clusterstate import ClusterState
    from exporter.config import Settings, all_targets
    from exporter.poller import TargetPoller

    settings = Settings(**yaml.safe_load(config_text))
    clusters = {cl.name: ClusterState(cl.name) for cl in settings.clusters}
    pollers = [TargetPoller(clusters[cl.name], t, settings) for cl, t in all_targets(settings)]
    for p in pollers:
        await p.open()
    try:
        snaps = []
        for _ in range(2):  # twice: the second poll has rates and ratios, as in steady state
            snaps = [await p.poll() for p in pollers]
            await asyncio.sleep(0.2)
        return snaps
    finally:
        await asyncio.gather(*(p.close() for p in pollers), return_exceptions=True)


def _copies(snaps: list[TargetSnapshot], n: int) -> list[TargetSnapshot]:
    out = []
    i = 0
    while len(out) < n:
        for s in snaps:
            if len(out) == n:
                break
            tid = TargetId(f"cluster-{i:04d}", s.target.target, s.target.kind)
            out.append(replace(s, target=tid))
        i += 1
    return out


def _time(fn: Any, snaps: list[TargetSnapshot], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(snaps)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def run(config_text: str, counts: tuple[int, ...], repeat: int = 5) -> dict[str, Any]:
    real = asyncio.run(_poll_once(config_text))
    rows = []
    for n in counts:
        snaps = _copies(real, n)
        body = render(snaps)
        same = fast_render(snaps) == body
        rows.append({
            "targets": n, "bytes": len(body),
            "series": sum(1 for x in body.splitlines() if x and not x.startswith(b"#")),
            "render_ms": _time(render, snaps, repeat),
            "fast_render_ms": _time(fast_render, snaps, repeat),
            "identical": same,
        })
    return {"real_targets_up": [s.up for s in real], "rows": rows}


def table(result: dict[str, Any]) -> str:
    lines = ["| targets | series | KiB | render ms (now) | candidate ms | identical bytes |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['targets']} | {r['series']} | {r['bytes'] / 1024:.0f} | "
                     f"{r['render_ms']:.1f} | {r['fast_render_ms']:.1f} | {r['identical']} |")
    return "\n".join(lines)

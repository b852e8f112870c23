"""Turns snapshots into the Prometheus text exposition, one family per catalogued name."""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator

from prometheus_client import Metric as Family
from prometheus_client.exposition import generate_latest
from prometheus_client.samples import Sample

from exporter import __version__
from exporter import catalogue as c
from exporter.catalogue import MetricSpec
from exporter.model import Metric
from exporter.snapshot import POLL_BUCKETS, TargetSnapshot


def _family(spec: MetricSpec) -> Family:
    name = spec.name.removesuffix("_total") if spec.type == "counter" else spec.name
    return Family(name, spec.help, spec.type)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class _SnapshotCollector:
    """The object prometheus_client's generate_latest walks: yields merged families."""

    def __init__(self, snapshots: Iterable[TargetSnapshot], daemon: Iterable[Metric]) -> None:
        self._snapshots = sorted(snapshots, key=lambda s: (s.target.cluster, s.target.target))
        self._daemon = tuple(daemon)

    def collect(self) -> Iterator[Family]:
        families: dict[str, Family] = {}
        build = _family(c.BUILD_INFO)
        build.samples.append(Sample(c.BUILD_INFO.name, {
            "version": __version__, "python_version": platform.python_version()}, 1.0))
        families[c.BUILD_INFO.name] = build
        for metric in self._daemon:  # process-wide series: no cluster/target labels
            family = families.get(metric.spec.name)
            if family is None:
                family = families[metric.spec.name] = _family(metric.spec)
            labels = dict(zip(metric.spec.labels, metric.labels, strict=True))
            family.samples.append(Sample(metric.spec.name, labels, metric.value))
        histogram = _family(c.POLL_DURATION)
        for snap in self._snapshots:
            base = {"cluster": snap.target.cluster, "target": snap.target.target}
            for metric in (*snap.daemon_metrics, *snap.metrics):
                spec = metric.spec
                family = families.get(spec.name)
                if family is None:
                    family = families[spec.name] = _family(spec)
                labels = dict(base)
                labels.update(zip(spec.labels, metric.labels, strict=True))
                family.samples.append(Sample(spec.name, labels, metric.value))
            hist = snap.poll_duration
            labels = {**base, "kind": snap.target.kind.value}
            name = c.POLL_DURATION.name
            for bound, count in zip(POLL_BUCKETS, hist.buckets, strict=True):
                histogram.samples.append(
                    Sample(f"{name}_bucket", {**labels, "le": _le(bound)}, float(count)))
            histogram.samples.append(Sample(f"{name}_count", labels, float(hist.count)))
            histogram.samples.append(Sample(f"{name}_sum", labels, hist.sum))
        if histogram.samples:
            families[c.POLL_DURATION.name] = histogram
        yield from families.values()


def render(snapshots: Iterable[TargetSnapshot], daemon: Iterable[Metric] = ()) -> bytes:
    """The exposition of every target's snapshot plus process-wide `daemon` series."""
    return generate_latest(_SnapshotCollector(snapshots, daemon))  # type: ignore[arg-type]

"""Turns snapshots into the Prometheus text exposition, one family per catalogued name."""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import (
    Metric as Family,
)
from prometheus_client.registry import Collector

from exporter import __version__
from exporter import catalogue as c
from exporter.catalogue import MetricSpec
from exporter.model import Metric
from exporter.snapshot import TargetSnapshot

TARGET_LABELS = ("cluster", "target")


def _family(spec: MetricSpec) -> GaugeMetricFamily | CounterMetricFamily:
    labels = (*TARGET_LABELS, *spec.labels) if spec.per_target else spec.labels
    if spec.type == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=labels)


class _Families:
    """The families of one exposition, created on first use, in first-use order."""

    def __init__(self) -> None:
        self.by_name: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def add(self, metric: Metric, base: tuple[str, str] | None) -> None:
        spec = metric.spec
        family = self.by_name.get(spec.name)
        if family is None:
            family = self.by_name[spec.name] = _family(spec)
        labels = (*base, *metric.labels) if spec.per_target and base else metric.labels
        family.add_metric(labels, metric.value)


def _poll_duration(snapshots: Iterable[TargetSnapshot]) -> HistogramMetricFamily:
    spec = c.POLL_DURATION
    family = HistogramMetricFamily(spec.name, spec.help, labels=(*TARGET_LABELS, *spec.labels))
    for snap in snapshots:
        buckets = [(s.labels["le"], s.value) for s in snap.poll_duration
                   if s.name.endswith("_bucket")]
        total = next((s.value for s in snap.poll_duration if s.name.endswith("_sum")), 0.0)
        if buckets:
            labels = (snap.target.cluster, snap.target.target, snap.target.kind.value)
            family.add_metric(labels, buckets, total)
    return family


class _SnapshotCollector(Collector):
    """The object prometheus_client's generate_latest walks: yields merged families."""

    def __init__(self, snapshots: Iterable[TargetSnapshot], daemon: Iterable[Metric]) -> None:
        self._snapshots = sorted(snapshots, key=lambda s: (s.target.cluster, s.target.target))
        self._daemon = tuple(daemon)

    def collect(self) -> Iterator[Family]:
        families = _Families()
        families.add(c.BUILD_INFO(1, __version__, platform.python_version()), None)
        for metric in self._daemon:  # process-wide series: no cluster/target labels
            families.add(metric, None)
        for snap in self._snapshots:
            base = (snap.target.cluster, snap.target.target)
            for metric in (*snap.daemon_metrics, *snap.metrics):
                families.add(metric, base)
        yield from families.by_name.values()
        histogram = _poll_duration(self._snapshots)
        if histogram.samples:
            yield histogram


def render(snapshots: Iterable[TargetSnapshot], daemon: Iterable[Metric] = ()) -> bytes:
    """The exposition of every target's snapshot plus process-wide `daemon` series."""
    return generate_latest(_SnapshotCollector(snapshots, daemon))

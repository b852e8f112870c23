"""Immutable per-target poll results and the store that swaps them in whole."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from prometheus_client.samples import Sample

from exporter.model import Metric, TargetId

if TYPE_CHECKING:
    from exporter.replication import Observation


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """What one poll of one target found; `metrics` is empty when the poll failed."""

    target: TargetId
    up: bool
    polled_at: float
    metrics: tuple[Metric, ...]  # data series of the collectors; empty when down
    daemon_metrics: tuple[Metric, ...]  # up, errors, last success, pool: always present
    # the poll-duration histogram's samples (selfmetrics.PollStats), labels added at render
    poll_duration: tuple[Sample, ...] = ()
    observed: tuple[Observation, ...] = ()  # what other polls need (replication.py)
    error: str | None = None  # one redacted line, for logs and `check`
    interval: float = 0.0  # the target's poll interval in seconds
    duration: float = 0.0  # wall time of this poll in seconds

    def values(self) -> dict[tuple[str, tuple[str, ...]], float]:
        return {(m.spec.name, m.labels): m.value for m in self.metrics}

    def value(self, name: str, *labels: str) -> float | None:
        """The data series `name` with exactly these extra label values, if this poll has it."""
        for metric in self.metrics:
            if metric.spec.name == name and metric.labels == labels:
                return metric.value
        return None


Renderer = Callable[[Iterable[TargetSnapshot], Iterable[Metric]], bytes]


@dataclass(slots=True)
class _Rendered:
    generation: int
    body: bytes
    gzipped: bytes | None = None


class SnapshotStore:
    """Holds the latest snapshot per target behind one reference.

    Writers (the event loop) replace the whole mapping; readers (HTTP threads) take one
    reference and never wait on a poll. The exposition is rendered at most once per change,
    on the first scrape after it, and reused until the next change.
    """

    def __init__(self, renderer: Renderer) -> None:
        self._renderer = renderer
        self._snapshots: Mapping[TargetId, TargetSnapshot] = MappingProxyType({})
        self._current: dict[TargetId, TargetSnapshot] = {}  # what _snapshots wraps
        self._expected: frozenset[TargetId] = frozenset()
        self._daemon_metrics: tuple[Metric, ...] = ()
        self._generation = 0
        self._rendered = _Rendered(-1, b"")
        self._render_lock = threading.Lock()

    @property
    def snapshots(self) -> Mapping[TargetId, TargetSnapshot]:
        return self._snapshots

    @property
    def expected(self) -> frozenset[TargetId]:
        return self._expected

    def expect(self, targets: Iterable[TargetId]) -> None:
        """Declare the configured targets; snapshots of any other target are dropped."""
        self._expected = frozenset(targets)
        self._swap({k: v for k, v in self._snapshots.items() if k in self._expected})

    def set_daemon_metrics(self, metrics: Iterable[Metric]) -> None:
        """Process-wide series (cluster files, shard) rendered without target labels."""
        self._daemon_metrics = tuple(metrics)
        self._generation += 1

    def publish(self, snapshot: TargetSnapshot) -> None:
        if snapshot.target not in self._expected:
            return  # a poll that finished after a reload removed its target
        # copy the plain dict (a C copy that reuses the stored hashes): {**proxy, ...} would
        # hash every key again through TargetId's Python __hash__, O(targets) Python calls
        # per poll, 0.8 s of event loop per cycle at 2200 targets (docs/benchmarks.md)
        snapshots = dict(self._current)
        snapshots[snapshot.target] = snapshot
        self._swap(snapshots)

    def _swap(self, snapshots: dict[TargetId, TargetSnapshot]) -> None:
        # the mapping is replaced before the generation moves, so a reader that sees the
        # new generation also sees the new mapping; the dict is never changed once wrapped
        self._current = snapshots
        self._snapshots = MappingProxyType(snapshots)
        self._generation += 1

    def ready(self) -> bool:
        snapshots = self._snapshots
        return all(t in snapshots for t in self._expected)

    def body(self, gzipped: bool = False) -> bytes:
        rendered = self._rendered
        if rendered.generation != self._generation:
            with self._render_lock:
                rendered = self._rendered
                generation = self._generation
                if rendered.generation != generation:
                    body = self._renderer(self._snapshots.values(), self._daemon_metrics)
                    rendered = _Rendered(generation, body)
                    self._rendered = rendered
        if not gzipped:
            return rendered.body
        if rendered.gzipped is None:
            # once per change: each compression holds ~270 KB of zlib state, and concurrent
            # scrapers racing into it after every poll left megabytes of heap behind
            with self._render_lock:
                if rendered.gzipped is None:
                    rendered.gzipped = gzip.compress(rendered.body, compresslevel=5)
        return rendered.gzipped

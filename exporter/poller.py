"""Polls one target under a hard deadline and turns whatever happens into a snapshot.

Kind-agnostic: the target's source fetches, the poller bounds it, counts it, logs changes
of state once, and publishes the result to the cluster's replication state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import MappingProxyType
from typing import Any

from exporter import catalogue as c
from exporter.clusterstate import ClusterState
from exporter.config import Settings
from exporter.connections import PoolStats
from exporter.model import Metric, PollContext, TargetId
from exporter.selfmetrics import PollStats
from exporter.snapshot import TargetSnapshot
from exporter.sources import Fetched, describe, source_for
from exporter.targets import AnyTarget

log = logging.getLogger(__name__)


class TargetPoller:
    """One target: its source, its poll statistics and its last snapshot."""

    def __init__(self, cluster: ClusterState, config: AnyTarget, settings: Settings) -> None:
        self.config = config
        self.kind = config.kind
        self.id = TargetId(cluster.name, config.name, self.kind)
        self.cluster = cluster
        self.interval = settings.interval_of(config)
        self.deadline = settings.deadline_of(config)
        self.jitter = settings.jitter_of(config)
        self.source = source_for(config, settings)
        group = self.source.phase_group
        self.phase_group = (cluster.name, group) if group else None
        self._stats = PollStats()
        self._last_success: float | None = None
        self._last: TargetSnapshot | None = None
        self._last_good: TargetSnapshot | None = None
        self._failed_collectors: set[str] = set()
        self._lingering: set[asyncio.Task[Any]] = set()

    @property
    def last(self) -> TargetSnapshot | None:
        return self._last

    async def open(self) -> None:
        await self.source.open()

    async def close(self) -> None:
        for task in list(self._lingering):
            task.cancel()
        await self.source.close()

    async def poll(self) -> TargetSnapshot:
        """Poll once; never raises except CancelledError. The deadline is hard: a poll
        stuck on a frozen server is abandoned (and cancelled in the background) on time."""
        started = time.time()
        t0 = time.perf_counter()
        fetch = self.source.fetch(self._context(started))
        task = asyncio.create_task(fetch, name=f"poll {self.id}")
        try:
            done, _ = await asyncio.wait({task}, timeout=self.deadline)
        except asyncio.CancelledError:
            task.cancel()
            raise
        fetched: Fetched | None = None
        error: str | None = None
        if task in done:
            exc = task.exception()
            if exc is None:
                fetched = task.result()
            else:
                error = describe(exc)
        else:
            task.cancel()
            self._lingering.add(task)
            task.add_done_callback(self._forget_lingering)
            error = (self.source.stalled_reason()
                     or f"no answer within the poll deadline of {self.deadline:g}s")
        return self._finish(started, time.perf_counter() - t0, fetched, error)

    def _forget_lingering(self, task: asyncio.Task[Any]) -> None:
        self._lingering.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not warn about it

    def _context(self, now: float) -> PollContext:
        good = self._last_good
        return PollContext(
            target=self.id,
            now=now,
            previous=MappingProxyType(good.values()) if good else MappingProxyType({}),
            previous_time=good.polled_at if good else None,
            previous_observed=good.observed if good else (),
            replication=self.cluster.view(),
        )

    def _log_collectors(self, fetched: Fetched) -> None:
        for name, ok in fetched.collector_ok.items():
            if ok:
                self._failed_collectors.discard(name)
            elif name not in self._failed_collectors:
                self._failed_collectors.add(name)
                log.warning("collector %s failed on %s: %s", name, self.id,
                            fetched.failures.get(name, "unknown"))

    def _log_outcome(self, up: bool, error: str | None) -> None:
        previous = self._last
        if up:
            if previous is not None and not previous.up:
                log.info("target %s is up again", self.id)
        elif previous is None or previous.up or previous.error != error:
            log.warning("poll of %s failed: %s", self.id, error)

    def _daemon_metrics(self, up: bool, fetched: Fetched | None) -> list[Metric]:
        kind = self.kind.value
        daemon = [c.UP(1 if up else 0, kind), c.POLL_ERRORS(self._stats.errors(), kind)]
        if self._last_success is not None:
            daemon.append(c.LAST_SUCCESS(self._last_success, kind))
        daemon.extend(_pool_metrics(self.source.stats(), kind))
        for name, ok in (fetched.collector_ok.items() if fetched else ()):
            daemon.append(c.COLLECTOR_SUCCESS(1 if ok else 0, kind, name))
        return daemon

    def _finish(
        self, started: float, duration: float, fetched: Fetched | None, error: str | None
    ) -> TargetSnapshot:
        up = fetched is not None
        self._stats.observe(duration, failed=not up)
        if fetched is not None:
            self._last_success = time.time()
            self._log_collectors(fetched)
        self._log_outcome(up, error)
        snapshot = TargetSnapshot(
            target=self.id,
            up=up,
            polled_at=started,
            metrics=tuple(fetched.metrics) if fetched else (),
            daemon_metrics=tuple(self._daemon_metrics(up, fetched)),
            poll_duration=self._stats.duration_samples(),
            observed=tuple(fetched.observed) if fetched else (),
            error=error,
            interval=self.interval,
            duration=duration,
        )
        self._last = snapshot
        if up:
            self._last_good = snapshot
        self.cluster.record(snapshot)
        return snapshot


def _pool_metrics(stats: PoolStats, kind: str) -> list[Metric]:
    return [
        c.POOL_CONNECTIONS(stats.idle, kind, "idle"),
        c.POOL_CONNECTIONS(stats.used, kind, "used"),
        c.POOL_MAX_CONNECTIONS(stats.max, kind),
    ]

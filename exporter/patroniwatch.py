"""Reads `/cluster` of every Patroni cluster on its `refresh_interval` and hands the answers
to PatroniMembers; the daemon applies the inventory when the members changed.

Each cluster's read is its own task: a hung or slow Patroni (each URL bounded by the
connect timeout) delays only its own cluster's next refresh, never another's, never a poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from exporter.config import Cluster
from exporter.inventory import Inventory
from exporter.patronimembers import PatroniMembers
from exporter.sources.base import PollError
from exporter.sources.patroni import read_cluster

log = logging.getLogger(__name__)

MAX_TICK = 1.0  # a cluster added by a reload is read within this


async def refresh(members: PatroniMembers, cluster: Cluster, timeout: float) -> bool:
    """One read of the cluster's /cluster; True if its targets changed."""
    block = cluster.patroni
    if block is None:
        return False
    try:
        answer = await read_cluster(block.urls, timeout)
    except PollError as exc:
        return members.update(cluster, None, str(exc))
    return members.update(cluster, answer.members)


async def refresh_all(members: PatroniMembers, clusters: Iterable[Cluster],
                      timeout: float) -> bool:
    """Every given Patroni cluster at once (the first read, before anything is applied)."""
    changed = await asyncio.gather(*(refresh(members, c, timeout) for c in clusters
                                     if c.patroni is not None))
    return any(changed)


class PatroniWatch:
    """The background refresh: `changed` when targets changed, else `unchanged` (to
    republish tierwatch_patroni_up and the member roles)."""

    def __init__(self, inventory: Inventory, members: PatroniMembers,
                 changed: Callable[[], Awaitable[None]], unchanged: Callable[[], None]) -> None:
        self.inventory = inventory
        self.members = members
        self._changed = changed
        self._unchanged = unchanged
        self._due: dict[str, float] = {}
        self._running: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self._start_due())
        finally:
            for task in self._running.values():
                task.cancel()

    def _start_due(self) -> float:
        """Start the reads that are due; the seconds until the next one may be."""
        now = time.monotonic()
        clusters = [c for c in self.inventory.clusters() if c.patroni is not None]
        self.members.forget({c.name for c in clusters})
        wait = MAX_TICK
        for cluster in clusters:
            assert cluster.patroni is not None
            due = self._due.setdefault(cluster.name, now + cluster.patroni.refresh_interval)
            if due <= now and cluster.name not in self._running:
                self._due[cluster.name] = due = now + cluster.patroni.refresh_interval
                self._running[cluster.name] = asyncio.create_task(
                    self._refresh(cluster), name=f"patroni {cluster.name}")
            wait = min(wait, max(due - now, 0.05))
        for name in set(self._due) - {c.name for c in clusters}:
            del self._due[name]
        return wait

    async def _refresh(self, cluster: Cluster) -> None:
        try:
            timeout = self.inventory.settings.connect_timeout
            if await refresh(self.members, cluster, timeout):
                await self._changed()
            else:
                self._unchanged()
        except Exception:  # a bug here must not end the refreshes of every cluster
            log.exception("cluster %s: Patroni refresh failed", cluster.name)
        finally:
            self._running.pop(cluster.name, None)

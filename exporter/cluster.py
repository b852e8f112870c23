"""Per-cluster memory shared between polls: targets' facts and the primary's WAL history."""

from __future__ import annotations

from collections import deque
from types import MappingProxyType
from typing import Any

from exporter.model import ClusterView, WalPoint
from exporter.snapshot import TargetSnapshot

# enough history to date a replica that is minutes behind at a 1 s poll interval
WAL_HISTORY_POINTS = 1800
WAL_HISTORY_SECONDS = 3600.0


class ClusterState:
    """Owned by the event loop; collectors only ever see the frozen `view()`."""

    def __init__(self, name: str, postgres_targets: tuple[str, ...]) -> None:
        self.name = name
        self.postgres_targets = postgres_targets
        self._facts: dict[str, dict[str, Any]] = {}
        self._wal: dict[str, deque[WalPoint]] = {}
        self._primary: str | None = None  # the target that last reported as primary
        self._view: ClusterView | None = None

    def record(self, snapshot: TargetSnapshot) -> None:
        target = snapshot.target.target
        if not snapshot.up:
            return
        self._facts[target] = dict(snapshot.facts)
        lsn = snapshot.facts.get("current_wal_bytes")
        if lsn is not None:
            history = self._wal.setdefault(target, deque(maxlen=WAL_HISTORY_POINTS))
            if self._primary != target:
                history.clear()  # a new primary (failover): the old timeline says nothing
                self._primary = target
            history.append(WalPoint(snapshot.polled_at, float(lsn)))
            horizon = snapshot.polled_at - WAL_HISTORY_SECONDS
            while len(history) > 2 and history[1].time < horizon:
                history.popleft()
        self._view = None

    def forget(self, target: str) -> None:
        self._facts.pop(target, None)
        self._wal.pop(target, None)
        if self._primary == target:
            self._primary = None
        self._view = None

    def view(self) -> ClusterView:
        if self._view is None:
            wal = tuple(self._wal.get(self._primary, ())) if self._primary else ()
            self._view = ClusterView(
                name=self.name,
                facts={k: MappingProxyType(v) for k, v in self._facts.items()},
                primary_wal=wal,
                primary_target=self._primary,
                postgres_targets=self.postgres_targets,
            )
        return self._view

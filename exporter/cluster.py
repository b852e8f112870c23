"""Per-cluster memory shared between polls: targets' facts and the primary's WAL history.

The history is what makes replica lag honest: each primary poll records (daemon clock,
primary WAL position), so a replica's replay position can be mapped back to the moment the
primary first wrote past it, which `replay_delay` turns into seconds. No write access and
no heartbeat table are needed.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from exporter.model import ClusterView, WalPoint
from exporter.snapshot import TargetSnapshot

# Runs of equal positions (an idle primary) are stored as their first and last point only,
# so the cap is reached by a busy primary: 4096 points at a 1 s interval date a replica
# that is more than an hour behind. Older replicas read as "at least this old".
WAL_HISTORY_POINTS = 4096
WAL_HISTORY_SECONDS = 3600.0


def add_point(history: deque[WalPoint], point: WalPoint) -> None:
    """Append a primary poll to `history`, keeping it increasing and compact."""
    if history and point.lsn < history[-1].lsn:
        # WAL went backwards: a different server or a restored backup; the old times lie
        history.clear()
    if len(history) >= 2 and history[-1].lsn == point.lsn == history[-2].lsn:
        # the first point of a run says when the primary got there, the last one that it
        # was still there: the ones between add nothing
        history[-1] = point
    else:
        history.append(point)
    horizon = point.time - WAL_HISTORY_SECONDS
    while len(history) > 2 and history[1].time < horizon:
        history.popleft()


def replay_delay(history: Sequence[WalPoint], replay_lsn: float, now: float) -> float | None:
    """Seconds since the primary first wrote WAL beyond `replay_lsn` — how stale a read on
    a replica at that replay position is at `now`. None without history.

    0 when the replica has replayed the primary's latest known position (an idle primary
    keeps it at 0 indefinitely). Otherwise the write happened between the last point at or
    below `replay_lsn` and the first point above it; the time is interpolated linearly
    between the two, so the error is at most one primary poll interval and about zero for
    a primary writing steadily. A position older than the whole history dates from at
    least its first point.
    """
    if not history:
        return None
    if replay_lsn >= history[-1].lsn:
        return 0.0
    i = bisect.bisect_right(history, replay_lsn, key=lambda p: p.lsn)
    after = history[i]
    if i == 0:
        written = after.time
    else:
        before = history[i - 1]
        share = (replay_lsn - before.lsn) / (after.lsn - before.lsn)
        written = before.time + share * (after.time - before.time)
    return max(0.0, now - written)


class ClusterState:
    """Owned by the event loop; collectors only ever see the frozen `view()`."""

    def __init__(self, name: str, postgres_targets: tuple[str, ...]) -> None:
        self.name = name
        self.postgres_targets = postgres_targets
        self._facts: dict[str, dict[str, Any]] = {}
        self._wal: dict[str, deque[WalPoint]] = {}
        self._primary: str | None = None  # the target that last reported as primary
        self._primary_down = False  # its last poll failed: its position is not current
        self._polled_at: dict[str, float] = {}
        self._interval: dict[str, float] = {}
        self._view: ClusterView | None = None

    def record(self, snapshot: TargetSnapshot) -> None:
        target = snapshot.target.target
        previous = self._polled_at.get(target)
        self._polled_at[target] = snapshot.polled_at
        if previous is not None and snapshot.polled_at > previous:
            self._interval[target] = snapshot.polled_at - previous
        if not snapshot.up:
            if target == self._primary and not self._primary_down:
                # replicas fall back to their own view instead of measuring against a
                # position the primary may have left long ago
                self._primary_down = True
                self._view = None
            return
        self._facts[target] = dict(snapshot.facts)
        lsn = snapshot.facts.get("current_wal_bytes")
        if lsn is not None:
            history = self._wal.setdefault(target, deque(maxlen=WAL_HISTORY_POINTS))
            if self._primary != target:
                history.clear()  # a new primary (failover): the old timeline says nothing
                self._primary = target
            self._primary_down = False
            add_point(history, WalPoint(snapshot.polled_at, float(lsn)))
        elif target == self._primary and snapshot.facts.get("in_recovery"):
            # the primary came back in recovery (demoted, rebuilt): its history is over
            self._primary = None
            self._wal.pop(target, None)
        self._view = None

    def forget(self, target: str) -> None:
        self._facts.pop(target, None)
        self._wal.pop(target, None)
        self._polled_at.pop(target, None)
        self._interval.pop(target, None)
        if self._primary == target:
            self._primary = None
        self._view = None

    def view(self) -> ClusterView:
        if self._view is None:
            primary = self._primary
            wal = tuple(self._wal.get(primary, ())) if primary and not self._primary_down else ()
            self._view = ClusterView(
                name=self.name,
                facts={k: MappingProxyType(v) for k, v in self._facts.items()},
                primary_wal=wal,
                primary_target=primary,
                postgres_targets=self.postgres_targets,
                primary_interval=self._interval.get(primary) if primary else None,
            )
        return self._view

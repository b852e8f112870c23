"""Per-cluster memory shared between polls: the primary's WAL history and replica identities.

The history is what makes replica lag honest: each primary poll records (daemon clock,
primary WAL position), so a replica's replay position can be mapped back to the moment the
primary first wrote past it (`replication.replay_delay`). No write access and no heartbeat
table are needed. Owned by the event loop; collectors only ever see the frozen view.
"""

from __future__ import annotations

from collections import deque

from exporter.model import find
from exporter.replication import (
    ReceivedPosition,
    ReceiverIdentity,
    ReplicationView,
    ServerPosition,
    WalPoint,
)
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


class ClusterState:
    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: dict[str, ReceiverIdentity] = {}
        self._wal: deque[WalPoint] = deque(maxlen=WAL_HISTORY_POINTS)
        self._primary: str | None = None  # the target that last reported as primary
        self._primary_down = False  # its last poll failed: its position is not current
        self._polled_at: dict[str, float] = {}
        self._interval: dict[str, float] = {}
        self._view: ReplicationView | None = None

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
        self._record_receiver(target, find(snapshot.observed, ReceiverIdentity))
        position = find(snapshot.observed, ServerPosition)
        if position is not None:
            self._record_position(target, snapshot.polled_at, position)
        received = find(snapshot.observed, ReceivedPosition)
        if received is not None and target != self._primary:
            self._record_received(snapshot.polled_at, received.lsn)
        self._view = None

    def _record_received(self, polled_at: float, lsn: float) -> None:
        # a replica received this much by its poll, so the primary had written at least as
        # much: a point between the primary's own polls. One that says less than the
        # history already does (a slower receiver, clocks a hair apart) adds nothing.
        last = self._wal[-1] if self._wal else None
        if last is not None and not self._primary_down and lsn >= last.lsn \
                and polled_at > last.time:
            add_point(self._wal, WalPoint(polled_at, lsn))

    def _record_receiver(self, target: str, identity: ReceiverIdentity | None) -> None:
        if identity is None:
            self._receivers.pop(target, None)
        else:
            self._receivers[target] = identity

    def _record_position(self, target: str, polled_at: float, position: ServerPosition) -> None:
        if position.current_wal_lsn is not None:
            if self._primary != target:
                self._wal.clear()  # a new primary (failover): the old timeline says nothing
                self._primary = target
            self._primary_down = False
            # a replica's point newer than this poll's start was recorded first only because
            # its poll ended first: the primary's point goes before it, not "backwards"
            later = []
            while self._wal and self._wal[-1].time >= polled_at:
                later.append(self._wal.pop())
            add_point(self._wal, WalPoint(polled_at, position.current_wal_lsn))
            for point in reversed(later):
                if point.lsn >= self._wal[-1].lsn:
                    add_point(self._wal, point)
        elif target == self._primary and position.in_recovery:
            # the primary came back in recovery (demoted, rebuilt): its history is over
            self._primary = None
            self._wal.clear()

    def forget(self, target: str) -> None:
        self._receivers.pop(target, None)
        self._polled_at.pop(target, None)
        self._interval.pop(target, None)
        if self._primary == target:
            self._primary = None
            self._wal.clear()
        self._view = None

    def view(self) -> ReplicationView:
        if self._view is None:
            primary = self._primary
            fresh = primary is not None and not self._primary_down
            self._view = ReplicationView(
                cluster=self.name,
                primary_target=primary,
                primary_wal=tuple(self._wal) if fresh else (),
                primary_interval=self._interval.get(primary) if primary else None,
                receivers=dict(self._receivers),
            )
        return self._view

"""The typed state one target's poll leaves for other polls: WAL history, receiver identity.

Collectors report what they saw as small frozen observations; `clusterstate.ClusterState`
keeps them per cluster and hands each poll a frozen `ReplicationView`. Nothing here does I/O
or holds mutable state, so collectors may import it and stay pure.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class WalPoint:
    """The primary's WAL insert position (bytes) at a wall-clock time (unix seconds)."""

    time: float
    lsn: float


@dataclass(frozen=True, slots=True)
class ServerPosition:
    """A PostgreSQL server's role and, on a primary, its current WAL position (bytes)."""

    in_recovery: bool
    current_wal_lsn: float | None = None


@dataclass(frozen=True, slots=True)
class ReceiverIdentity:
    """Who a replica's WAL receiver is to its primary: the primary's pg_stat_replication
    row for it carries this slot or application_name."""

    slot: str | None = None
    application_name: str | None = None


@dataclass(frozen=True, slots=True)
class ReceivedPosition:
    """A streaming replica's WAL receive position (bytes) at its poll: the primary had
    written at least this much by then, a sample of the primary's WAL between its polls."""

    lsn: float


@dataclass(frozen=True, slots=True)
class RedisRunId:
    """The Redis server's run_id: a new one means the server restarted."""

    run_id: str


Observation = ServerPosition | ReceiverIdentity | ReceivedPosition | RedisRunId


@dataclass(frozen=True, slots=True)
class ReplicationView:
    """The cluster's replication state as of the last polls, read-only."""

    cluster: str
    # the postgres target that most recently reported itself as primary
    primary_target: str | None = None
    # its WAL positions over the last minutes, oldest first; () while its position is unknown
    primary_wal: tuple[WalPoint, ...] = ()
    # seconds between the primary's last two polls (None until it was polled twice)
    primary_interval: float | None = None
    # postgres target -> its WAL receiver's identity (replicas only)
    receivers: Mapping[str, ReceiverIdentity] = field(default_factory=dict)


def replay_delay(history: Sequence[WalPoint], replay_lsn: float, now: float) -> float | None:
    """Seconds since the primary first wrote WAL beyond `replay_lsn` — how stale a read on
    a replica at that replay position is at `now`. None without history.

    0 when the replica has replayed the primary's latest known position (an idle primary
    keeps it at 0 indefinitely). Otherwise the write happened between the last point at or
    below `replay_lsn` and the first point above it. Inside a stretch of writing the time
    is interpolated linearly (about exact for a primary writing steadily). A replica at the
    end of an idle run — caught up with an idle primary, then stalled — knows only that
    the first write after it fell between the two points: the middle is taken, so the error
    is at most half the gap between samples (the history holds the primary's polls and the
    replicas' receive positions, spread over the interval by the scheduler). A position
    older than the whole history dates from at least its first point.
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
        if share == 0 and i >= 2 and history[i - 2].lsn == before.lsn:
            share = 0.5  # the end of an idle run: the first write fell anywhere in the gap
        written = before.time + share * (after.time - before.time)
    return max(0.0, now - written)

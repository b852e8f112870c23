"""Plain value types shared by the config, the collectors, the poller and the renderer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.catalogue import MetricSpec


class Kind(StrEnum):
    POSTGRES = "postgres"
    PGBOUNCER = "pgbouncer"
    REDIS = "redis"


class Role(StrEnum):
    PRIMARY = "primary"
    REPLICA = "replica"


@dataclass(frozen=True, slots=True)
class TargetId:
    """A target's identity: the `cluster` and `target` labels of all its series."""

    cluster: str
    target: str
    kind: Kind

    def __str__(self) -> str:
        return f"{self.cluster}/{self.target}"


@dataclass(frozen=True, slots=True)
class Metric:
    """One sample of a catalogued family; `labels` are the values of `spec.labels`, in order."""

    spec: MetricSpec
    labels: tuple[str, ...]
    value: float


@dataclass(frozen=True, slots=True)
class Fact:
    """A value a collector learned that other polls need but that is not exported.

    Example: the primary's current WAL position, which replica lag is computed from.
    Facts live in the target's snapshot and reach other targets via `ClusterView`.
    """

    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class WalPoint:
    """The primary's WAL insert position (bytes) at a wall-clock time (unix seconds)."""

    time: float
    lsn: float


@dataclass(frozen=True, slots=True)
class ClusterView:
    """Read-only facts about the other targets of the same cluster, as of the last polls."""

    name: str
    # target name -> that target's latest facts (successful polls only)
    facts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # the primary's WAL positions over the last minutes, oldest first
    primary_wal: tuple[WalPoint, ...] = ()
    # the postgres target that most recently reported itself as primary
    primary_target: str | None = None
    # seconds between the primary's last two polls (None until it was polled twice); with
    # primary_wal[-1].time it tells a reader whether the primary's position is still fresh
    primary_interval: float | None = None
    # names of the cluster's postgres targets
    postgres_targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PollContext:
    """Everything a collector may read besides the server's answer; all of it read-only."""

    target: TargetId
    now: float  # unix time the poll started
    server_version: int = 0  # PostgreSQL server_version_num; 0 where it does not apply
    role: Role | None = None  # PostgreSQL only, detected this poll
    # (family name, label values) -> value from the previous successful poll of this target
    previous: Mapping[tuple[str, tuple[str, ...]], float] = field(default_factory=dict)
    previous_time: float | None = None
    cluster: ClusterView | None = None

    def previous_value(self, spec: MetricSpec, *labels: str) -> float | None:
        return self.previous.get((spec.name, labels))

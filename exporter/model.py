"""Plain value types shared by the config, the sources, the collectors and the renderer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from exporter.catalogue import MetricSpec
    from exporter.replication import Observation, ReplicationView

ObservationT = TypeVar("ObservationT")


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


def find(observations: tuple[Observation, ...], kind: type[ObservationT]) -> ObservationT | None:
    """The observation of type `kind` among `observations`, if there is one."""
    for item in observations:
        if isinstance(item, kind):
            return item
    return None


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
    # what the previous successful poll of this target observed (e.g. Redis's run_id)
    previous_observed: tuple[Observation, ...] = ()
    replication: ReplicationView | None = None  # the cluster's other targets, as last polled

    def previous_value(self, spec: MetricSpec, *labels: str) -> float | None:
        return self.previous.get((spec.name, labels))

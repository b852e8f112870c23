"""Read routing decisions: may reads (or writes) go to this target now? From snapshots only.

Pure functions over the SnapshotStore's data: no I/O, no clock of their own (`now` is
passed in), so the HTTP endpoints, the status page and the tests judge alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from exporter import catalogue as c
from exporter.durations import format_duration
from exporter.model import Kind, TargetId
from exporter.snapshot import TargetSnapshot

Check = Literal["primary", "replica", "read-only"]
CHECKS: tuple[Check, ...] = ("primary", "replica", "read-only")
STALENESS_INTERVALS = 3  # default max_staleness: this many of the target's poll intervals
_KIND_ORDER = {Kind.POSTGRES: 0, Kind.PGBOUNCER: 1, Kind.REDIS: 2}

Snapshots = Mapping[TargetId, TargetSnapshot]


class StoreLike(Protocol):
    """What routing reads of a SnapshotStore: the data and the configured targets."""

    @property
    def snapshots(self) -> Snapshots: ...

    @property
    def expected(self) -> frozenset[TargetId]: ...


Source = StoreLike | Snapshots | Iterable[TargetId]


@dataclass(frozen=True, slots=True)
class _State:
    """What a snapshot says about one target, before any check judges it."""

    polled: bool
    up: bool
    fresh: bool
    role: str | None
    lag_seconds: float | None
    lag_bytes: float | None
    poll_age: float | None
    staleness: float | None


def _snapshots_of(source: Source) -> Snapshots:
    if isinstance(source, Mapping):
        return source
    snapshots = getattr(source, "snapshots", None)
    return snapshots if isinstance(snapshots, Mapping) else {}


def targets_of(source: Source) -> set[TargetId]:
    """Every known target: the configured ones (a store's `expected`) and the polled ones."""
    if isinstance(source, Mapping):
        return set(source)
    expected = getattr(source, "expected", None)
    if expected is not None:
        return set(expected) | set(_snapshots_of(source))
    return set(source)  # type: ignore[arg-type]


def cluster_names(snapshots_or_expected: Source) -> list[str]:
    """The known clusters, sorted by name."""
    return sorted({t.cluster for t in targets_of(snapshots_or_expected)})


def find_target(source: Source, cluster: str, name: str) -> TargetId | None:
    for target in targets_of(source):
        if target.cluster == cluster and target.target == name:
            return target
    return None


def _last_success(snapshot: TargetSnapshot) -> float | None:
    if snapshot.up:
        return snapshot.polled_at  # the data is as old as the moment its poll began
    for metric in getattr(snapshot, "daemon_metrics", ()):
        if metric.spec.name == c.LAST_SUCCESS.name:
            return float(metric.value)
    return None


def _state(snapshot: TargetSnapshot | None, max_staleness: float | None, now: float) -> _State:
    if snapshot is None:
        return _State(False, False, False, None, None, None, None, max_staleness)
    staleness = max_staleness
    if staleness is None and snapshot.interval > 0:
        staleness = STALENESS_INTERVALS * snapshot.interval
    success = _last_success(snapshot)
    fresh = success is not None and staleness is not None and now - success <= staleness
    role = None
    recovery = snapshot.value(c.PG_IN_RECOVERY.name) if snapshot.up else None
    if recovery is not None:
        role = "replica" if recovery >= 1 else "primary"
    return _State(
        polled=True, up=snapshot.up, fresh=fresh, role=role,
        lag_seconds=snapshot.value(c.PG_REPLICA_LAG_SECONDS.name) if role == "replica" else None,
        lag_bytes=snapshot.value(c.PG_REPLICA_LAG_BYTES.name) if role == "replica" else None,
        poll_age=max(0.0, now - snapshot.polled_at), staleness=staleness,
    )


def _availability(state: _State) -> str | None:
    """Why no check can pass (not polled, down, stale), or None when the data is usable."""
    if not state.polled:
        return "not polled yet"
    if not state.up:
        return "last poll failed"
    if not state.fresh:
        limit = format_duration(state.staleness) if state.staleness else "the limit"
        return f"data is {state.poll_age or 0:.1f}s old, over {limit}"
    return None


def _judge(state: _State, check: Check, max_lag: float) -> tuple[bool, str]:
    problem = _availability(state)
    if problem is not None:
        return False, problem
    if state.role is None:
        return False, "role unknown"
    if state.role == "primary":
        if check == "replica":
            return False, "a primary, not a replica"
        return True, "primary"
    if check == "primary":
        return False, "a replica (in recovery), not a primary"
    limit = format_duration(max_lag)
    if state.lag_seconds is None:
        return False, "replica lag unknown"
    if state.lag_seconds > max_lag:
        return False, f"replica lag {state.lag_seconds:.3f}s over {limit}"
    return True, f"replica lag {state.lag_seconds:.3f}s within {limit}"


def _number(value: float | None, digits: int = 3) -> float | int | None:
    if value is None:
        return None
    if value == int(value) and abs(value) < 2**53:
        return int(value)
    return round(value, digits)


def health(
    target: TargetId, snapshot: TargetSnapshot | None, check: Check,
    max_lag: float, max_staleness: float | None, now: float,
) -> dict[str, Any]:
    """The body of /primary, /replica and /read-only for one PostgreSQL target."""
    state = _state(snapshot, max_staleness, now)
    healthy, reason = _judge(state, check, max_lag)
    return {
        "cluster": target.cluster, "target": target.target, "role": state.role,
        "up": state.up, "fresh": state.fresh,
        "lag_seconds": _number(state.lag_seconds), "lag_bytes": _number(state.lag_bytes, 0),
        "poll_age_seconds": _number(state.poll_age), "healthy": healthy, "reason": reason,
    }


def _max(values: Iterable[float]) -> float | None:
    return max(values, default=None)


def _pgbouncer_fields(snapshot: TargetSnapshot | None) -> dict[str, Any]:
    metrics = snapshot.metrics if snapshot is not None else ()
    waiting = [m.value for m in metrics
               if m.spec.name == c.BOUNCER_CLIENTS.name and m.labels[-1:] == ("waiting",)]
    saturation = [m.value for m in metrics if m.spec.name == c.BOUNCER_SATURATION.name]
    return {"clients_waiting": _number(sum(waiting)) if waiting else None,
            "max_pool_saturation": _number(_max(saturation), 4)}


def _redis_fields(snapshot: TargetSnapshot | None) -> dict[str, Any]:
    def get(name: str) -> float | None:
        return snapshot.value(name) if snapshot is not None else None

    return {"hit_ratio": _number(get(c.REDIS_HIT_RATIO.name), 4),
            "memory_used_bytes": _number(get(c.REDIS_MEMORY_USED.name), 0),
            "memory_max_bytes": _number(get(c.REDIS_MEMORY_MAX.name), 0)}


def _service_entry(
    target: TargetId, snapshot: TargetSnapshot | None, max_staleness: float | None, now: float,
) -> dict[str, Any]:
    """PgBouncer and Redis: healthy means up with fresh data; no role, no lag."""
    state = _state(snapshot, max_staleness, now)
    problem = _availability(state)
    entry: dict[str, Any] = {
        "cluster": target.cluster, "target": target.target, "role": None,
        "up": state.up, "fresh": state.fresh, "lag_seconds": None, "lag_bytes": None,
        "poll_age_seconds": _number(state.poll_age), "healthy": problem is None,
        "reason": problem or "up", "kind": target.kind.value,
    }
    if target.kind is Kind.PGBOUNCER:
        entry.update(_pgbouncer_fields(snapshot))
    else:
        entry.update(_redis_fields(snapshot))
    return entry


def cluster_report(
    snapshots: Source, cluster: str, max_lag: float, max_staleness: float | None,
    now: float, expected: Iterable[TargetId] = (),
) -> dict[str, Any] | None:
    """The body of /cluster/<cluster>; None for an unknown cluster.

    `snapshots` is a SnapshotStore (configured targets count before their first poll), a
    mapping of snapshots or the configured TargetIds; `expected` adds configured targets.
    PostgreSQL targets are judged as /read-only would judge them.
    """
    data = _snapshots_of(snapshots)
    members = [t for t in targets_of(snapshots) | set(expected) if t.cluster == cluster]
    if not members:
        return None
    members.sort(key=lambda t: (_KIND_ORDER.get(t.kind, 9), t.target))
    entries = []
    for target in members:
        if target.kind is Kind.POSTGRES:
            entry = health(target, data.get(target), "read-only", max_lag, max_staleness, now)
            entry["kind"] = target.kind.value
        else:
            entry = _service_entry(target, data.get(target), max_staleness, now)
        entries.append(entry)
    primaries = [e["target"] for e in entries if e["role"] == "primary" and e["healthy"]]
    # two healthy primaries (split brain) name neither: a router must not guess where to write
    return {"cluster": cluster, "primary": primaries[0] if len(primaries) == 1 else None,
            "targets": entries}

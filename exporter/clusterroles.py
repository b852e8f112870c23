"""`tierwatch_cluster_primaries`: how many PostgreSQL targets of each cluster are up and not
in recovery, kept from the snapshots as they are published.

Counted here, once per change of a target's role, instead of at every render: a render walks
every series of every target, and the count changes only at a promotion, a demotion or an
outage. The daemon republishes its process-wide series when `observe` says so.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter import catalogue as c
from exporter.model import Kind, Metric, TargetId
from exporter.snapshot import TargetSnapshot


def is_primary(snapshot: TargetSnapshot) -> bool:
    """Up, and its last poll read pg_is_in_recovery() = false."""
    return snapshot.up and snapshot.value(c.PG_IN_RECOVERY.name) == 0


class ClusterPrimaries:
    def __init__(self) -> None:
        self._primary: dict[TargetId, bool] = {}  # every expected postgres target
        self._clusters: tuple[str, ...] = ()

    def expect(self, targets: Iterable[TargetId]) -> None:
        """The watched targets; a cluster with postgres targets gets a count, 0 at first."""
        wanted = [t for t in targets if t.kind is Kind.POSTGRES]
        self._primary = {t: self._primary.get(t, False) for t in wanted}
        self._clusters = tuple(sorted({t.cluster for t in wanted}))

    def observe(self, snapshot: TargetSnapshot) -> bool:
        """Record a published snapshot; True if a count changed."""
        target = snapshot.target
        if target not in self._primary:
            return False
        primary = is_primary(snapshot)
        if self._primary[target] == primary:
            return False
        self._primary[target] = primary
        return True

    def metrics(self) -> list[Metric]:
        counts = dict.fromkeys(self._clusters, 0)
        for target, primary in self._primary.items():
            counts[target.cluster] += primary
        return [c.CLUSTER_PRIMARIES(count, cluster) for cluster, count in counts.items()]

"""What to watch, from one place: the settings file's clusters, the cluster files' clusters
and any other origin of members (Patroni next), limited to this process's shard.

The daemon asks for `targets()` and applies the difference; it never assembles targets
itself. A new origin of targets is one more `MemberOrigin` registered here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from exporter import catalogue as c
from exporter.config import Cluster, Settings
from exporter.discovery import ClusterFiles
from exporter.model import Metric, TargetId
from exporter.sharding import select
from exporter.targets import AnyTarget

log = logging.getLogger(__name__)

# extra targets of a configured cluster from somewhere other than its own lists
MemberOrigin = Callable[[Cluster], tuple[AnyTarget, ...]]


@dataclass(frozen=True, slots=True)
class Watched:
    """One target to watch: the cluster it belongs to and its validated config."""

    cluster: str
    config: AnyTarget

    @property
    def id(self) -> TargetId:
        return TargetId(self.cluster, self.config.name, self.config.kind)


class Inventory:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.files: ClusterFiles | None = None
        self.origins: list[MemberOrigin] = []
        self.reconfigure(settings)

    def reconfigure(self, settings: Settings) -> None:
        """A new settings file: cluster files are kept while their patterns stay the same."""
        self.settings = settings
        patterns = settings.cluster_files
        if patterns != (self.files.patterns if self.files else ()):
            self.files = ClusterFiles(patterns) if patterns else None

    def refresh(self) -> bool:
        """Re-read the cluster files (blocking file I/O: call it off the event loop); True if
        what is watched or exported may have changed."""
        return self.files.refresh() if self.files is not None else False

    def clusters(self) -> tuple[Cluster, ...]:
        """The static clusters plus the discovered ones, limited to this process's shard."""
        clusters = list(self.settings.clusters)
        names = {cluster.name for cluster in clusters}
        for cluster in self.files.clusters() if self.files else ():
            if cluster.name in names:
                log.error("cluster %r from a cluster file is already defined: skipped",
                          cluster.name)
                continue
            names.add(cluster.name)
            clusters.append(cluster)
        return tuple(select(clusters, self.settings.shard))

    def targets(self) -> tuple[Watched, ...]:
        watched: list[Watched] = []
        for cluster in self.clusters():
            members: list[AnyTarget] = [*cluster.targets()]
            for origin in self.origins:
                members.extend(origin(cluster))
            watched.extend(Watched(cluster.name, target) for target in members)
        return tuple(watched)

    def daemon_metrics(self) -> list[Metric]:
        shard = self.settings.shard
        metrics = [c.SHARD_INFO(1, str(shard.index), str(shard.count))]
        if self.files is not None:
            errors = self.files.errors()
            for path in self.files.paths():
                metrics.append(c.CLUSTER_FILE_VALID(0 if path in errors else 1, path))
        return metrics

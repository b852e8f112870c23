"""Clusters from a directory of YAML files, re-read when a file changes (file_sd style).

A file holds a list of clusters (or a mapping with a `clusters:` list), each in the same form
as the settings file's `clusters`. A broken file is reported once and skipped; if it was good
before, its last good clusters stay watched, so a half-written file never drops monitoring.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from exporter.config import Cluster, ConfigError, _first_error, yaml_error

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _FileState:
    stamp: tuple[int, int]  # mtime_ns, size
    clusters: tuple[Cluster, ...]
    error: str | None


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error(path, exc)) from None


def load_cluster_file(path: Path) -> tuple[Cluster, ...]:
    data = _read_yaml(path)
    if data is None:
        return ()
    if isinstance(data, dict) and set(data) == {"clusters"}:
        data = data["clusters"]
    if not isinstance(data, list):
        raise ConfigError(f"{path}: (top level): must be a list of clusters")
    clusters = []
    for index, item in enumerate(data):
        try:
            clusters.append(Cluster.model_validate(item))
        except ValidationError as exc:
            message = _first_error(path, exc)
            prefix = f"{path}: "
            raise ConfigError(f"{prefix}[{index}].{message.removeprefix(prefix)}") from None
    names = [c.name for c in clusters]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ConfigError(f"{path}: [{index}].name: cluster name {name!r} is used twice")
    return tuple(clusters)


class ClusterFiles:
    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        self._files: dict[str, _FileState] = {}

    def refresh(self) -> bool:
        """Re-read files that appeared, changed or vanished; True if any cluster or any
        file's validity changed (both show in what the daemon exports)."""
        before = (self.clusters(), self.errors())
        paths = sorted({p for pattern in self.patterns for p in glob.glob(pattern)
                        if os.path.isfile(p)})
        for gone in set(self._files) - set(paths):
            log.info("cluster file %s removed", gone)
            del self._files[gone]
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            known = self._files.get(path)
            if known is not None and known.stamp == stamp:
                continue
            try:
                clusters = load_cluster_file(Path(path))
            except ConfigError as exc:
                log.error("cluster file skipped: %s", exc)
                kept = known.clusters if known is not None else ()
                self._files[path] = _FileState(stamp, kept, str(exc))
                continue
            if known is not None and known.error:
                log.info("cluster file %s is valid again", path)
            self._files[path] = _FileState(stamp, clusters, None)
        return (self.clusters(), self.errors()) != before

    def clusters(self) -> tuple[Cluster, ...]:
        return tuple(c for path in sorted(self._files) for c in self._files[path].clusters)

    def paths(self) -> list[str]:
        return sorted(self._files)

    def errors(self) -> dict[str, str]:
        return {p: s.error for p, s in self._files.items() if s.error}

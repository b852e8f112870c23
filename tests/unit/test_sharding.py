"""Shards partition the clusters exactly, never split one, and move ~1/(n+1) on growth."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import Cluster, ConfigError, Shard, load_settings
from exporter.sharding import select, shard_of


def make_clusters(count: int) -> list[Cluster]:
    return [
        Cluster.model_validate({
            "name": f"cluster-{i}",
            "postgres": [{"name": "primary", "dsn": f"postgresql://m@db{i}a/postgres"},
                         {"name": "replica", "dsn": f"postgresql://m@db{i}b/postgres"}],
            "redis": [{"name": "cache", "url": f"redis://cache{i}:6379/0"}],
        })
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_partition_exactly(count: int) -> None:
    clusters = make_clusters(300)
    seen: list[str] = []
    for index in range(count):
        seen += [c.name for c in select(clusters, Shard(index=index, count=count))]
    assert sorted(seen) == sorted(c.name for c in clusters)  # each exactly once


def test_a_cluster_is_never_split() -> None:
    # targets are selected by their cluster only: every target of a cluster lands together
    clusters = make_clusters(50)
    for index in range(4):
        for cluster in select(clusters, Shard(index=index, count=4)):
            assert len(cluster.postgres) == 2 and len(cluster.redis) == 1


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_growing_by_one_shard_moves_about_one_in_n_plus_1(n: int) -> None:
    names = [f"cluster-{i}" for i in range(3000)]
    before = {name: shard_of(name, n) for name in names}
    after = {name: shard_of(name, n + 1) for name in names}
    moved = [name for name in names if before[name] != after[name]]
    assert all(after[name] == n for name in moved)  # only to the new shard
    fraction = len(moved) / len(names)
    assert abs(fraction - 1 / (n + 1)) < 0.03, fraction


def test_balance_is_reasonable() -> None:
    names = [f"c{i}" for i in range(4000)]
    counts = [sum(1 for n in names if shard_of(n, 4) == i) for i in range(4)]
    assert min(counts) > 900 and max(counts) < 1100, counts


def test_shard_settings_from_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("shard: {index: 1, count: 3}\n")
    assert load_settings(path).shard == Shard(index=1, count=3)
    monkeypatch.setenv("TIERWATCH_SHARD__INDEX", "2")
    assert load_settings(path).shard.index == 2
    path.write_text("shard: {index: 3, count: 3}\n")
    monkeypatch.delenv("TIERWATCH_SHARD__INDEX")
    with pytest.raises(ConfigError, match=r"shard\.index: must be below count"):
        load_settings(path)

"""Clusters from files (add, change, remove, broken) and sharding, against real servers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from exporter.sharding import shard_of
from tests.support import DaemonProcess, Scrape, wait_until
from tests.topology import Topology


def targets_of(scrape: Scrape) -> set[tuple[str, str]]:
    return {(s.labels["cluster"], s.labels["target"]) for s in scrape.find("tierwatch_up")}


def test_cluster_files_add_change_remove_and_broken(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    topo = yaml.safe_load(topology.tierwatch_config(poll_interval=1.0))
    cluster = topo["clusters"][0]
    files = tmp_path / "clusters.d"
    files.mkdir()
    daemon = daemon_factory(yaml.safe_dump({
        "poll_interval": 1.0, "cluster_files": [str(files / "*.yaml")],
        "cluster_files_refresh": 0.3, "clusters": []}))
    assert targets_of(daemon.scrape()) == set()

    # add
    first = files / "main.yaml"
    first.write_text(yaml.safe_dump([cluster]))
    wait_until(lambda: all(daemon.scrape().value("tierwatch_up", cluster="main", target=t) == 1
                           for t in ("primary", "replica-1", "bouncer", "cache")),
               10, "the file's cluster polled and up")

    # change: the Redis target renamed
    changed = dict(cluster, redis=[dict(cluster["redis"][0], name="cache-b")])
    first.write_text(yaml.safe_dump({"clusters": [changed]}))
    scrape = wait_until(
        lambda: (s := daemon.scrape()).value("tierwatch_up", target="cache-b") == 1 and s,
        10, "the renamed target up")
    assert scrape.find("tierwatch_up", target="cache") == []

    # a broken file next to it is reported and skipped; the good one keeps running
    broken = files / "broken.yaml"
    broken.write_text("- name: other\n  postgres: [{name: x, dsn: 'mysql://nope'}]\n")
    scrape = wait_until(
        lambda: (s := daemon.scrape()).value("tierwatch_cluster_file_valid",
                                             file=str(broken)) == 0 and s,
        10, "the broken file reported")
    assert scrape.value("tierwatch_cluster_file_valid", file=str(first)) == 1
    assert scrape.find("tierwatch_up", cluster="other") == []
    assert "cluster file skipped" in daemon.log_text()
    assert "[0].postgres[0].dsn" in daemon.log_text()

    # the good file half-written: its last good clusters stay watched
    first.write_text("clusters: [ {name: main, postgres: [")
    wait_until(lambda: daemon.scrape().value("tierwatch_cluster_file_valid",
                                             file=str(first)) == 0, 10, "half-written file")
    before = daemon.scrape().value("tierwatch_last_poll_success_timestamp_seconds",
                                   target="primary")
    wait_until(lambda: daemon.scrape().value("tierwatch_last_poll_success_timestamp_seconds",
                                             target="primary") > before, 5,
               "the last good clusters still polled")

    # remove
    first.unlink()
    broken.unlink()
    wait_until(lambda: targets_of(daemon.scrape()) == set(), 10, "all targets removed")
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_two_shards_split_clusters_without_overlap(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    base = yaml.safe_load(topology.tierwatch_config(poll_interval=1.0))
    template = base["clusters"][0]
    names = [f"c{i}" for i in range(8)]
    base["clusters"] = [dict(template, name=name, postgres=template["postgres"][:1],
                             pgbouncer=[], redis=[]) for name in names]
    shards = []
    for index in range(2):
        daemon = daemon_factory(yaml.safe_dump({**base, "shard": {"index": index, "count": 2}}))
        shards.append({c for c, _ in targets_of(daemon.scrape())})
    assert shards[0] | shards[1] == set(names)
    assert not shards[0] & shards[1]
    assert shards[0] == {n for n in names if shard_of(n, 2) == 0}

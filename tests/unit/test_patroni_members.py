"""The `patroni:` block (config), PatroniMembers (members as targets, grace, outages) and
ClusterPrimaries, without a cluster: the real one is in tests/integration/test_patroni*.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter import catalogue as c
from exporter.clusterroles import ClusterPrimaries
from exporter.config import Cluster, ConfigError, load_settings
from exporter.model import Kind, TargetId
from exporter.patroni import PatroniMember
from exporter.patronimembers import PatroniMembers
from exporter.snapshot import TargetSnapshot

TEMPLATE = "postgresql://monitor@{host}:{port}/postgres"


def block(extra: str = "") -> str:
    return f'{{urls: ["http://127.0.0.1:8008"], dsn: "{TEMPLATE}"{extra}}}'


BLOCK = block()


def _load(tmp_path: Path, patroni: str, extra: str = "") -> Cluster:
    path = tmp_path / "tierwatch.yaml"
    path.write_text(f"clusters:\n  - name: demo\n    patroni: {patroni}\n{extra}")
    return load_settings(path).clusters[0]


def test_a_patroni_block_loads_with_defaults(tmp_path: Path) -> None:
    cluster = _load(tmp_path, BLOCK)
    assert cluster.patroni is not None
    assert cluster.patroni.refresh_interval == 5 and cluster.patroni.member_grace == 300
    assert cluster.postgres == ()
    grace = _load(tmp_path, block(", member_grace: 2m"))
    assert grace.patroni is not None and grace.patroni.member_grace == 120


@pytest.mark.parametrize(("block", "where", "what"), [
    ("{urls: [], dsn: x}", "patroni.urls", "at least 1 item"),
    ('{urls: ["ftp://h"], dsn: "' + TEMPLATE + '"}', "patroni.urls[0]", "http:// or https://"),
    ('{urls: ["http://u:hunter2@h:8008"], dsn: "' + TEMPLATE + '"}', "patroni.urls[0]",
     "credentials"),
    ('{urls: ["http://h:8008"], dsn: "postgresql://m:hunter2@h/p"}', "patroni.dsn", "{host}"),
    ('{urls: ["http://h:8008"], dsn: "mysql://m:hunter2@{host}/p"}', "patroni.dsn", "scheme"),
    (block(", refresh_interval: 0"), "patroni.refresh_interval", "greater"),
    (block(", member_grace: soon"), "patroni.member_grace", "duration"),
    (block(", password_file: /nonexistent"), "patroni.password_file",
     "cannot read"),
    (block(", users: []"), "patroni.users", "unknown setting"),
])
def test_an_invalid_block_is_one_line_naming_the_field(
    tmp_path: Path, block: str, where: str, what: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, block)
    message = str(info.value)
    assert f"clusters[0].{where}: " in message and what in message, message
    assert "\n" not in message and "hunter2" not in message


def test_postgres_list_and_patroni_block_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "tierwatch.yaml"
    path.write_text(f"clusters:\n  - name: demo\n    patroni: {BLOCK}\n    postgres:\n"
                    '      - {name: a, dsn: "postgresql://m@127.0.0.1:5432/postgres"}\n')
    run = subprocess.run([sys.executable, "-m", "exporter", "check", "-c", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "clusters[0].patroni: a cluster takes either a postgres list or a patroni block" \
        in run.stderr


def member(name: str, port: int, role: str = "replica", state: str = "streaming"
           ) -> PatroniMember:
    return PatroniMember(name, "127.0.0.1", port, role, state)


HEALTHY = (member("pg-1", 5001, "leader", "running"), member("pg-2", 5002),
           member("pg-3", 5003))


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return _load(tmp_path, block(", member_grace: 60"),
                 '    redis:\n      - {name: pg-3, url: "redis://127.0.0.1:6379/0"}\n')


def test_members_become_postgres_targets_named_after_them(cluster: Cluster) -> None:
    members = PatroniMembers()
    assert members(cluster) == () and members.pending(cluster)
    assert members.update(cluster, HEALTHY, now=0) is True
    targets = members(cluster)
    # pg-3 would clash with the cluster's Redis target: left out, the static one wins
    assert [t.name for t in targets] == ["pg-1", "pg-2"]
    assert [t.kind for t in targets] == [Kind.POSTGRES] * 2
    dsn = targets[1].dsn
    assert (dsn.host, dsn.port, dsn.user, dsn.dbname) == ("127.0.0.1", "5002", "monitor",
                                                          "postgres")
    # roles swap (a switchover): the same targets, the same objects (pools kept)
    swapped = (member("pg-1", 5001), member("pg-2", 5002, "leader", "running"), HEALTHY[2])
    assert members.update(cluster, swapped, now=1) is False
    assert members(cluster) == targets and members(cluster)[0] is targets[0]
    # a member moved to another port is a new target
    assert members.update(cluster, (HEALTHY[0], member("pg-2", 6002), HEALTHY[2]), now=2)
    assert members(cluster)[1].dsn.port == "6002"


def test_unreachable_patroni_keeps_the_members_and_says_so(cluster: Cluster) -> None:
    members = PatroniMembers()
    members.update(cluster, HEALTHY, now=0)
    before = members(cluster)
    assert members.update(cluster, None, "no Patroni REST API answered", now=500) is False
    assert members(cluster) == before  # no churn, however long it lasts
    assert [(m.spec, m.labels, m.value) for m in members.metrics()] == [
        (c.PATRONI_UP, ("demo",), 0)]  # no frozen roles either
    members.update(cluster, HEALTHY, now=501)
    info = [m.labels for m in members.metrics() if m.spec is c.PATRONI_MEMBER_INFO]
    assert info == [("demo", "pg-1", "leader", "running"), ("demo", "pg-2", "replica",
                    "streaming"), ("demo", "pg-3", "replica", "streaming")]
    assert members.metrics()[0].value == 1


def test_a_crashed_member_stays_watched_for_the_grace(cluster: Cluster) -> None:
    members = PatroniMembers()
    members.update(cluster, HEALTHY, now=0)
    # pg-2's key expired while it was streaming: it never said goodbye
    assert members.update(cluster, HEALTHY[::2], now=10) is False
    assert [t.name for t in members(cluster)] == ["pg-1", "pg-2"]
    assert members.update(cluster, HEALTHY[::2], now=69) is False
    assert members.update(cluster, HEALTHY[::2], now=70) is True
    assert [t.name for t in members(cluster)] == ["pg-1"]
    # back: watched again
    assert members.update(cluster, HEALTHY, now=80) is True


def test_a_member_back_within_the_grace_was_never_removed(cluster: Cluster) -> None:
    members = PatroniMembers()
    members.update(cluster, HEALTHY, now=0)
    before = members(cluster)
    members.update(cluster, HEALTHY[::2], now=10)
    assert members.update(cluster, HEALTHY, now=65) is False  # the grace restarted
    assert members.update(cluster, HEALTHY[::2], now=70) is False
    assert members(cluster) == before


def test_a_member_stopped_cleanly_leaves_at_the_next_refresh(cluster: Cluster) -> None:
    members = PatroniMembers()
    members.update(cluster, HEALTHY, now=0)
    stopped = (HEALTHY[0], member("pg-2", 5002, "replica", "stopped"), HEALTHY[2])
    assert members.update(cluster, stopped, now=1) is False  # still listed: still watched
    assert members.update(cluster, HEALTHY[::2], now=2) is True
    assert [t.name for t in members(cluster)] == ["pg-1"]


def test_a_cluster_no_longer_configured_is_forgotten(cluster: Cluster) -> None:
    members = PatroniMembers()
    members.update(cluster, HEALTHY, now=0)
    members.forget(set())
    assert members.metrics() == [] and members.pending(cluster)


def _snap(target: TargetId, up: bool, in_recovery: float | None) -> TargetSnapshot:
    metrics = () if in_recovery is None else (c.PG_IN_RECOVERY(in_recovery),)
    return TargetSnapshot(target, up, 0.0, metrics, ())


def test_primaries_per_cluster_change_only_with_a_role() -> None:
    a, b = TargetId("main", "a", Kind.POSTGRES), TargetId("main", "b", Kind.POSTGRES)
    cache = TargetId("main", "cache", Kind.REDIS)
    other = TargetId("other", "x", Kind.POSTGRES)
    primaries = ClusterPrimaries()
    primaries.expect([a, b, cache, other])
    counts = {m.labels: m.value for m in primaries.metrics()}
    assert counts == {("main",): 0, ("other",): 0}
    assert primaries.observe(_snap(a, True, 0)) is True
    assert primaries.observe(_snap(a, True, 0)) is False  # no change: no republish
    assert primaries.observe(_snap(b, True, 1)) is False
    assert primaries.observe(_snap(cache, True, None)) is False
    assert {m.labels: m.value for m in primaries.metrics()}[("main",)] == 1
    assert primaries.observe(_snap(b, True, 0)) is True  # a split brain reads 2
    assert {m.labels: m.value for m in primaries.metrics()}[("main",)] == 2
    assert primaries.observe(_snap(a, False, None)) is True  # down is not a primary
    assert primaries.observe(_snap(b, True, None)) is True  # in_recovery unknown: neither
    assert {m.labels: m.value for m in primaries.metrics()}[("main",)] == 0
    assert all(m.spec is c.CLUSTER_PRIMARIES for m in primaries.metrics())

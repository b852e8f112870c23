"""A real Patroni cluster (tests/patroni.py): three members + etcd, one per module.

The switchover and the crash failover share this module's one cluster (bootstrap ~5 s; the
crash waits for the leader key's 20 s lease): the tests run in file order and each starts
from whatever leader the previous one left.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import psycopg
import pytest

from exporter.sources.base import PollError
from exporter.sources.patroni import read_cluster
from tests.patroni import PatroniCluster, http_json
from tests.support import wait_until
from tests.topology import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def patroni_cluster() -> Iterator[PatroniCluster]:
    with PatroniCluster() as pc:
        yield pc


def _timelines(pc: PatroniCluster) -> dict[str, int]:
    return {name: int(m.status()["timeline"]) for name, m in pc.members.items()}


def test_three_members_one_leader_and_a_monitor_role(patroni_cluster: PatroniCluster) -> None:
    pc = patroni_cluster
    roles = pc.wait_healthy()
    assert roles == {"pg-1": ("leader", "running"), "pg-2": ("replica", "streaming"),
                     "pg-3": ("replica", "streaming")}
    assert [m.in_recovery() for m in pc.members.values()] == [False, True, True]
    # The post_bootstrap role: logs in with its password over TCP, pg_monitor only.
    for name in pc.names:
        with psycopg.connect(pc.monitor_dsn(name), password=pc.monitor_password,
                             connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT current_user, rolsuper, pg_has_role('pg_monitor', 'MEMBER') "
                "FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == ("monitor", False, True), name
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pc.monitor_dsn("pg-1"), password="wrong", connect_timeout=3)
    # Every REST API answers /cluster the same way; /primary only on the leader.
    assert {http_json(u + "/primary")[0] for u in pc.urls()[1:]} == {503}
    assert http_json(pc.urls()[0] + "/primary")[0] == 200


def test_switchover_moves_the_leader_and_the_timeline(patroni_cluster: PatroniCluster) -> None:
    pc = patroni_cluster
    pc.wait_healthy()
    old = pc.leader()
    assert old is not None
    new = pc.replicas()[0]
    before = _timelines(pc)
    pc.write(10)
    took = pc.switchover(new)
    assert took < 30
    roles = pc.wait_healthy()
    assert roles[new] == ("leader", "running") and roles[old] == ("replica", "streaming")
    assert pc.members[new].in_recovery() is False
    assert pc.members[old].in_recovery() is True
    wait_until(lambda: _timelines(pc) == {n: before[old] + 1 for n in pc.names}, 30,
               "every member on the new timeline")


def test_crash_of_the_leader_fails_over_and_the_member_rejoins(
    patroni_cluster: PatroniCluster,
) -> None:
    pc = patroni_cluster
    pc.wait_healthy()
    old = pc.leader()
    assert old is not None
    before = _timelines(pc)[old]
    began = time.monotonic()
    pc.kill(old)
    assert pc.members[old].postmaster_pid() is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pc.members[old].superuser_dsn(), connect_timeout=2)
    # A new leader only once the dead one's lease (ttl 20 s) has run out.
    wait_until(lambda: pc.leader() not in (None, old), 60, "a new leader after the crash")
    new = pc.leader()
    assert new is not None
    assert time.monotonic() - began > 10, "a failover before the lease ran out"
    # /cluster names the leader as soon as it holds the key, a moment before it is promoted.
    wait_until(lambda: pc.members[new].in_recovery() is False, 15, f"{new} promoted")
    pc.restart(old)
    roles = pc.wait_healthy()
    assert roles[old] == ("replica", "streaming") and roles[new] == ("leader", "running")
    assert pc.members[old].in_recovery() is True
    wait_until(lambda: set(_timelines(pc).values()) == {before + 1}, 30,
               "every member on the new timeline")


def test_read_cluster_takes_the_first_rest_api_that_answers(
    patroni_cluster: PatroniCluster,
) -> None:
    """sources/patroni.py against the real REST APIs: a refused URL and a hung Patroni
    (SIGSTOP: the kernel accepts, nobody answers) each cost at most the per-URL timeout."""
    pc = patroni_cluster
    pc.wait_healthy()
    refused = f"http://127.0.0.1:{free_port()}"
    answer = asyncio.run(read_cluster([refused, *pc.urls()], 1.0))
    assert answer.url == pc.urls()[0]
    assert sorted(m.name for m in answer.members) == list(pc.names)
    hung = pc.members[pc.names[0]].process
    hung.kill(signal.SIGSTOP)
    try:
        began = time.monotonic()
        answer = asyncio.run(read_cluster(pc.urls(), 1.0))
        assert answer.url == pc.urls()[1]
        assert 0.9 < time.monotonic() - began < 3
        with pytest.raises(PollError) as info:
            asyncio.run(read_cluster([pc.urls()[0], refused], 0.5))
    finally:
        hung.kill(signal.SIGCONT)
    message = str(info.value)
    assert "\n" not in message and refused.removeprefix("http://") in message

"""A real Patroni cluster (tests/patroni.py: three members + etcd) watched by a real
tierwatch daemon through its `patroni:` block, one cluster and one daemon per module.

The tests run in file order and each starts from whatever leader the previous one left:
a switchover, a crash failover (it waits for the leader key's 20 s lease), a member joining
and leaving, Patroni unreachable, the /cluster reader. Polls and refreshes every second.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
import yaml

from exporter.sources.base import PollError
from exporter.sources.patroni import read_cluster
from tests.patroni import PatroniCluster, http_json, tierwatch_config
from tests.support import DaemonProcess, Scrape, http_get, wait_until
from tests.topology import free_port

pytestmark = pytest.mark.slow

CLUSTER = "demo"
POLL = 1.0  # poll_interval and refresh_interval of the daemon
# "within two polls": two intervals, plus one poll's own duration and the 0.1 s sampling
TWO_POLLS = 2 * POLL + 0.6


@pytest.fixture(scope="module")
def patroni_cluster() -> Iterator[PatroniCluster]:
    with PatroniCluster() as pc:
        yield pc


@pytest.fixture(scope="module")
def daemon(patroni_cluster: PatroniCluster) -> Iterator[DaemonProcess]:
    config = yaml.safe_load(tierwatch_config(patroni_cluster, POLL, POLL, CLUSTER))
    config["connect_timeout"] = 1.0  # a SIGSTOPped REST API costs 1 s of a refresh
    process = DaemonProcess(yaml.safe_dump(config)).start()
    yield process
    process.stop()


# -- reading tierwatch


def _pg(scrape: Scrape, name: str, target: str) -> float | None:
    return scrape.value(name, cluster=CLUSTER, target=target)


def in_recovery(scrape: Scrape, target: str) -> float | None:
    return _pg(scrape, "tierwatch_pg_in_recovery", target)


def up(scrape: Scrape, target: str) -> float | None:
    return scrape.value("tierwatch_up", cluster=CLUSTER, target=target, kind="postgres")


def targets(scrape: Scrape) -> set[str]:
    return {s.labels["target"] for s in scrape.find("tierwatch_up", cluster=CLUSTER)}


def primaries(scrape: Scrape) -> float | None:
    return scrape.value("tierwatch_cluster_primaries", cluster=CLUSTER)


def route(daemon: DaemonProcess, path: str) -> int:
    return http_get(f"{daemon.url}{path}", timeout=2)[0]


def settled(daemon: DaemonProcess, pc: PatroniCluster) -> Scrape:
    """Until tierwatch sees Patroni's leader as the one primary and every other member as a
    caught-up replica measured against it."""
    pc.wait_healthy()
    leader = pc.leader()

    def check() -> Scrape | None:
        scrape = daemon.scrape()
        ok = leader is not None and primaries(scrape) == 1 and targets(scrape) == set(pc.names)
        for name in pc.names:
            ok = ok and up(scrape, name) == 1 and in_recovery(scrape, name) == (
                0 if name == leader else 1)
            if name != leader:
                ok = ok and _pg(scrape, "tierwatch_pg_replica_lag_from_primary", name) == 1
        return scrape if ok else None

    return wait_until(check, 30, f"tierwatch settled on leader {leader}: {daemon.log_tail()}")


@dataclass
class Watch:
    """Samples Patroni's /cluster and tierwatch's /metrics every 0.1 s and notes when each
    condition first held (monotonic seconds), and every set of targets tierwatch exported."""

    daemon: DaemonProcess
    pc: PatroniCluster
    first: dict[str, float] = field(default_factory=dict)
    target_sets: set[frozenset[str]] = field(default_factory=set)
    primaries_seen: set[float | None] = field(default_factory=set)

    def until(self, conditions: dict[str, Callable[[dict[str, tuple[str, str]], Scrape], bool]],
              timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and set(conditions) - set(self.first):
            now = time.monotonic()
            try:
                roles = self.pc.roles()
            except (OSError, RuntimeError):
                roles = {}
            scrape = self.daemon.scrape()
            self.target_sets.add(frozenset(targets(scrape)))
            self.primaries_seen.add(primaries(scrape))
            for name, holds in conditions.items():
                if name not in self.first and holds(roles, scrape):
                    self.first[name] = now
            time.sleep(0.1)
        missing = set(conditions) - set(self.first)
        assert not missing, f"never held: {missing}; log: {self.daemon.log_tail()}"
        return self.first


def _timelines(pc: PatroniCluster) -> dict[str, int]:
    return {name: int(pc.members[name].status()["timeline"]) for name in pc.names}


def _log_since(daemon: DaemonProcess, mark: int) -> str:
    return daemon.log_text()[mark:]


def _clean(log: str) -> None:
    assert "Traceback" not in log and " ERROR " not in log, log


# -- the tests


def test_three_members_one_leader_and_a_monitor_role(
    patroni_cluster: PatroniCluster, daemon: DaemonProcess,
) -> None:
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
    # tierwatch: every member a postgres target named after it, from the patroni: block
    scrape = settled(daemon, pc)
    assert scrape.value("tierwatch_patroni_up", cluster=CLUSTER) == 1
    info = {s.labels["target"]: (s.labels["role"], s.labels["state"])
            for s in scrape.find("tierwatch_patroni_member_info", cluster=CLUSTER)}
    assert info == roles
    assert {_pg(scrape, "tierwatch_pg_timeline_id", n) for n in pc.names} == {1}
    assert route(daemon, f"/primary/{CLUSTER}/pg-1") == 200
    assert route(daemon, f"/replica/{CLUSTER}/pg-2?max_lag=5s") == 200
    assert pc.monitor_password not in scrape.text and pc.monitor_password not in \
        daemon.log_text()


def test_switchover_is_followed_within_two_polls(
    patroni_cluster: PatroniCluster, daemon: DaemonProcess,
) -> None:
    pc = patroni_cluster
    settled(daemon, pc)
    old, new = pc.leader(), pc.replicas()[0]
    assert old is not None
    before = _timelines(pc)
    mark, pid = len(daemon.log_text()), daemon.proc and daemon.proc.pid
    pc.write(10)
    switch = threading.Thread(target=pc.switchover, args=(new,))
    began = time.monotonic()
    switch.start()
    watch = Watch(daemon, pc)
    routes: dict[str, tuple[int, int]] = {}

    def tw_new(roles: dict[str, tuple[str, str]], scrape: Scrape) -> bool:
        if in_recovery(scrape, new) != 0:
            return False
        # the routing endpoints answer from the same snapshots: at once
        routes["at promotion"] = (route(daemon, f"/primary/{CLUSTER}/{new}"),
                                  route(daemon, f"/primary/{CLUSTER}/{old}"))
        return True

    first = watch.until({
        "patroni new": lambda roles, _s: roles.get(new) == ("leader", "running"),
        "patroni old": lambda roles, _s: roles.get(old, ("", ""))[0] == "replica"
        and roles[old][1] in ("running", "streaming"),
        "tierwatch new": tw_new,
        "tierwatch old": lambda _r, s: in_recovery(s, old) == 1 and up(s, old) == 1,
    }, 60)
    switch.join(60)
    print({k: round(v - began, 2) for k, v in first.items()})
    assert first["tierwatch new"] - first["patroni new"] <= TWO_POLLS
    assert first["tierwatch old"] - first["patroni old"] <= TWO_POLLS
    assert routes["at promotion"] == (200, 503)
    # every member kept its target label throughout (the role is a value, not a label)
    assert watch.target_sets == {frozenset(pc.names)}
    # lag against the new primary, < 1 s, within three polls of the old leader streaming
    pc.wait_healthy()
    caught_up = time.monotonic()
    scrape = settled(daemon, pc)
    assert time.monotonic() - caught_up <= 3 * POLL + 0.6
    for name in pc.replicas():
        lag = _pg(scrape, "tierwatch_pg_replica_lag_seconds", name)
        assert lag is not None and lag < 1, (name, lag)
    assert route(daemon, f"/replica/{CLUSTER}/{old}?max_lag=1s") == 200
    assert json.loads(http_get(f"{daemon.url}/cluster/{CLUSTER}")[1])["primary"] == new
    # the timeline grew by one, on every member, as tierwatch reads it
    wait_until(lambda: {_pg(daemon.scrape(), "tierwatch_pg_timeline_id", n)
                        for n in pc.names} == {before[old] + 1}, 10 * POLL,
               "every member on the new timeline in tierwatch")
    assert _timelines(pc) == {n: before[old] + 1 for n in pc.names}
    # no restart, no churn, no error per poll
    log = _log_since(daemon, mark)
    assert daemon.proc is not None and daemon.proc.pid == pid and daemon.proc.poll() is None
    assert "Patroni members changed" not in log, log
    _clean(log)
    assert log.count(f"poll of {CLUSTER}/{old} failed") <= 3, log


def test_crash_of_the_leader_fails_over_and_the_member_rejoins(
    patroni_cluster: PatroniCluster, daemon: DaemonProcess,
) -> None:
    pc = patroni_cluster
    settled(daemon, pc)
    old = pc.leader()
    assert old is not None
    before = _timelines(pc)[old]
    mark = len(daemon.log_text())
    began = time.monotonic()
    pc.kill(old)
    assert pc.members[old].postmaster_pid() is None
    killed = time.monotonic()
    watch = Watch(daemon, pc)
    first = watch.until({"tierwatch down": lambda _r, s: up(s, old) == 0}, 10)
    assert first["tierwatch down"] - killed <= TWO_POLLS
    # A new leader only once the dead one's lease (ttl 20 s) has run out.
    wait_until(lambda: pc.leader() not in (None, old), 60, "a new leader after the crash")
    new = pc.leader()
    assert new is not None
    assert time.monotonic() - began > 10, "a failover before the lease ran out"
    first = watch.until({
        "patroni new": lambda roles, _s: roles.get(new) == ("leader", "running"),
        "tierwatch new": lambda _r, s: in_recovery(s, new) == 0 and primaries(s) == 1,
    }, 20)
    assert first["tierwatch new"] - first["patroni new"] <= TWO_POLLS
    assert route(daemon, f"/primary/{CLUSTER}/{new}") == 200
    assert route(daemon, f"/primary/{CLUSTER}/{old}") == 503
    assert 0 in watch.primaries_seen  # the leaderless moment was seen, and never two
    assert 2 not in watch.primaries_seen
    # The dead member's key expires: it leaves /cluster without having said goodbye, and
    # stays watched (down) for member_grace, so TierwatchTargetDown can fire for it.
    wait_until(lambda: old not in pc.roles(), 40, f"{old} gone from /cluster")
    time.sleep(2 * POLL)  # two refreshes without it
    scrape = daemon.scrape()
    assert up(scrape, old) == 0 and targets(scrape) == set(pc.names)
    assert f"member {old} left /cluster while" in _log_since(daemon, mark)
    # restarted: back as a replica of the new leader, the same target
    pc.restart(old)
    roles = pc.wait_healthy()
    assert roles[old] == ("replica", "streaming") and roles[new] == ("leader", "running")
    scrape = settled(daemon, pc)
    assert in_recovery(scrape, old) == 1
    wait_until(lambda: {_pg(daemon.scrape(), "tierwatch_pg_timeline_id", n)
                        for n in pc.names} == {before + 1}, 30, "the new timeline everywhere")
    assert watch.target_sets == {frozenset(pc.names)}
    log = _log_since(daemon, mark)
    assert "Patroni members changed" not in log, log
    _clean(log)


def test_members_joining_and_leaving(
    patroni_cluster: PatroniCluster, daemon: DaemonProcess,
) -> None:
    pc = patroni_cluster
    settled(daemon, pc)
    mark = len(daemon.log_text())
    pc.add_member("pg-4")
    pc.wait_healthy()  # pg-4 cloned and streaming
    scrape = settled(daemon, pc)  # tierwatch polls it as a replica
    assert targets(scrape) == {"pg-1", "pg-2", "pg-3", "pg-4"}
    log = _log_since(daemon, mark)
    # the others kept their pollers and pools: nothing removed
    assert "Patroni members changed: 4 targets (1 added, 0 removed)" in log, log
    # taken out for good: a clean stop (its Patroni says "stopped"), then its key gone
    mark = len(daemon.log_text())
    pc.stop_member("pg-4")
    wait_until(lambda: daemon.scrape().find("tierwatch_patroni_member_info", target="pg-4",
                                            state="stopped"), 10,
               "tierwatch reading pg-4 stopped in /cluster")
    pc.expire_member("pg-4")
    gone = time.monotonic()
    wait_until(lambda: "pg-4" not in targets(daemon.scrape()), 10,
               "pg-4 no longer watched")
    assert time.monotonic() - gone <= TWO_POLLS + 1
    log = _log_since(daemon, mark)
    assert "Patroni members changed: 3 targets (0 added, 1 removed)" in log, log
    assert "left /cluster while" not in log  # it said goodbye: no grace
    settled(daemon, pc)
    _clean(_log_since(daemon, mark))


def test_patroni_unreachable_keeps_the_members(
    patroni_cluster: PatroniCluster, daemon: DaemonProcess,
) -> None:
    """Every REST API hung (SIGSTOP: PostgreSQL runs on, detached from Patroni)."""
    pc = patroni_cluster
    settled(daemon, pc)
    mark = len(daemon.log_text())
    processes = [pc.members[n].process for n in pc.names]
    for process in processes:
        process.kill(signal.SIGSTOP)
    try:
        # three URLs x 1 s timeout, after at most one refresh interval
        scrape = wait_until(
            lambda: (s := daemon.scrape()).value("tierwatch_patroni_up",
                                                 cluster=CLUSTER) == 0 and s,
            3 * 1.0 + 2 * POLL + 1, "tierwatch_patroni_up 0")
        assert scrape.find("tierwatch_patroni_member_info") == []
        time.sleep(2 * POLL)
        scrape = daemon.scrape()
        assert targets(scrape) == set(pc.names)
        assert all(up(scrape, n) == 1 for n in pc.names) and primaries(scrape) == 1
    finally:
        for process in processes:
            process.kill(signal.SIGCONT)
    wait_until(lambda: daemon.scrape().value("tierwatch_patroni_up", cluster=CLUSTER) == 1,
               10, "tierwatch_patroni_up 1 again")
    log = _log_since(daemon, mark)
    assert log.count("keeping its 3 known members") == 1, log
    assert "Patroni members changed" not in log
    _clean(log)


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
    assert sorted(m.name for m in answer.members) == sorted(pc.names)
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

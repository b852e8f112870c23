"""Integration tests of the local topology harness itself (tests/topology.py)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.topology import Topology, pids_under, wait_until

pytestmark = pytest.mark.integration


def _leftovers(workdir: Path) -> str:
    return subprocess.run(["pgrep", "-af", str(workdir)], capture_output=True,
                          text=True, check=False).stdout


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    t = Topology()
    try:
        t.start()
        yield t
    finally:
        t.stop()
        t.stop()  # idempotent
    assert t.workdir is not None
    assert not _leftovers(t.workdir)
    assert not pids_under(t.workdir)  # also catches renamed processes (by their cwd)
    assert not t.workdir.exists()


def test_start_time(topo: Topology, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\ntopology started in {topo.start_seconds:.2f}s")
    assert topo.start_seconds < 30


def test_replica_streaming(topo: Topology) -> None:
    with psycopg.connect(topo.superuser_dsn(topo.primary)) as conn:
        rows = conn.execute("SELECT application_name, state FROM pg_stat_replication").fetchall()
        slot = conn.execute("SELECT active, slot_type FROM pg_replication_slots "
                            "WHERE slot_name = 'replica_1'").fetchone()
    assert rows == [("replica-1", "streaming")]
    assert slot == (True, "physical")


def test_monitor_role(topo: Topology) -> None:
    for server, in_recovery in ((topo.primary, False), (topo.replica, True)):
        with psycopg.connect(topo.monitor_dsn(server), password=topo.monitor_password) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (in_recovery,)
            assert conn.execute("SELECT pg_has_role('pg_monitor', 'MEMBER'), rolsuper "
                                "FROM pg_roles WHERE rolname = current_user").fetchone() \
                == (True, False)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(topo.monitor_dsn(topo.primary), password="wrong").close()


def test_config_and_password_files(topo: Topology) -> None:
    doc = yaml.safe_load(topo.tierwatch_config(poll_interval=2, listen="127.0.0.1:9999"))
    assert doc["listen"] == "127.0.0.1:9999" and doc["poll_interval"] == 2
    (cluster,) = doc["clusters"]
    assert [t["name"] for t in cluster["postgres"]] == ["primary", "replica-1"]
    pg_file = Path(cluster["postgres"][0]["password_file"])
    assert pg_file.read_text() == topo.monitor_password
    assert pg_file.stat().st_mode & 0o777 == 0o600
    assert Path(cluster["redis"][0]["password_file"]).read_text() == topo.redis_monitor_password
    assert topo.monitor_password not in topo.tierwatch_config()


def test_app_through_pgbouncer(topo: Topology) -> None:
    # Transaction pooling cannot carry prepared statements (DESIGN §8).
    with psycopg.connect(topo.app_dsn_via_pgbouncer(), prepare_threshold=None,
                         autocommit=True) as conn:
        for i in range(8):
            conn.execute("INSERT INTO items (payload) VALUES (%s)", (f"p{i}",))
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] >= 8


def test_pgbouncer_admin_console(topo: Topology) -> None:
    with psycopg.connect(topo.monitor_dsn(topo.pgbouncer), password=topo.monitor_password,
                         autocommit=True, prepare_threshold=None) as conn:
        for _ in range(7):  # past psycopg's default prepare threshold of 5
            cur = conn.execute("SHOW POOLS")
            cols = [c.name for c in cur.description or []]
            pools = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
        assert {"database", "user", "cl_active", "sv_idle"} <= set(cols)
        assert {p["database"] for p in pools} >= {"pgbouncer"}
        with pytest.raises(psycopg.Error):
            conn.execute("PAUSE app")  # stats user, not admin


def test_redis_monitor_acl(topo: Topology) -> None:
    with redis.Redis(topo.redis.host, topo.redis.port, username="monitor",
                     password=topo.redis_monitor_password, decode_responses=True) as client:
        assert client.ping()
        assert client.info()["maxmemory_policy"] == "allkeys-lru"
        assert client.config_get("maxmemory") == {"maxmemory": "16777216"}
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("x")
    with redis.Redis.from_url(topo.redis_url()) as client:
        assert client.set("x", "1") and client.get("x") == b"1"


def test_redis_sigstop_then_stop_start_same_port(topo: Topology) -> None:
    port, old_pid = topo.redis.port, topo.redis.pid
    topo.redis.kill(signal.SIGSTOP)
    # No retries: redis-py's default backoff would turn one timeout into seconds.
    no_retry = Retry(NoBackoff(), 0)
    with redis.Redis(topo.redis.host, port, socket_timeout=0.3, retry=no_retry) as client, \
            pytest.raises(redis.exceptions.TimeoutError):
        client.ping()
    topo.redis.stop()  # must SIGCONT first, else it hangs
    assert not topo.redis.is_running()
    with redis.Redis(topo.redis.host, port, socket_connect_timeout=0.3,
                     retry=no_retry) as client, \
            pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    topo.redis.start()
    assert topo.redis.is_running() and topo.redis.port == port and topo.redis.pid != old_pid
    with redis.Redis.from_url(topo.redis_url()) as client:
        assert client.ping() and client.get("x") is None  # no persistence


def test_pgbouncer_stop_start(topo: Topology) -> None:
    topo.pgbouncer.stop()
    assert not topo.pgbouncer.is_running()
    topo.pgbouncer.start()
    with psycopg.connect(topo.app_dsn_via_pgbouncer(), prepare_threshold=None) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_failover_and_rebuild(topo: Topology) -> None:
    """Kill the primary, promote, then rebuild; runs last as it changes the topology."""
    old_pid = topo.primary.pid
    topo.primary.kill(signal.SIGKILL)
    wait_until(lambda: not topo.primary.is_running(), 10, "primary death")
    topo.promote_replica()
    assert topo.psql(topo.replica, "SELECT pg_is_in_recovery()") == "f"
    topo.psql(topo.replica, "INSERT INTO items (payload) VALUES ('promoted')", dbname="app")

    topo.rebuild_replica()  # restarts the killed primary too
    assert topo.primary.pid != old_pid
    assert topo.psql(topo.replica, "SELECT pg_is_in_recovery()") == "t"
    assert topo.psql(topo.primary, "SELECT state FROM pg_stat_replication") == "streaming"
    topo.psql(topo.primary, "INSERT INTO items (payload) VALUES ('after')", dbname="app")
    wait_until(lambda: topo.psql(topo.replica, "SELECT count(*) FROM items WHERE payload = "
                                 "'after'", dbname="app") == "1", 10, "replay on the replica")

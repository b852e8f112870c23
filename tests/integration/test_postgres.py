"""PostgreSQL server metrics against the real primary and replica, as the pg_monitor role.

Connections by state and application, the oldest transaction, block counters and the hit
ratio, and that every catalogued PostgreSQL family shows up. The daemon polls every second
as `monitor` (pg_monitor + CONNECT only).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from exporter import catalogue as c
from tests.support import DaemonProcess, Scrape, wait_until
from tests.topology import Topology

pytestmark = pytest.mark.integration

INTERVAL = 1.0
PRIMARY = {"cluster": "main", "target": "primary"}
REPLICA = {"cluster": "main", "target": "replica-1"}
PG_SECTIONS = ("postgres", "replication-primary", "replication-replica")


@pytest.fixture
def daemon(topology: Topology, daemon_factory: Any) -> Iterator[DaemonProcess]:
    d: DaemonProcess = daemon_factory(topology.tierwatch_config(poll_interval=INTERVAL))
    wait_until(lambda: d.scrape().value(c.PG_IN_RECOVERY.name, **REPLICA) == 1, 10,
               "first poll of the replica")
    yield d
    assert "Traceback" not in d.log_text(), d.log_tail(40)


def app_connection(topo: Topology, application_name: str) -> psycopg.Connection[Any]:
    server = topo.primary
    return psycopg.connect(host=server.host, port=server.port, user="app", dbname="app",
                           password=topo.app_password, application_name=application_name)


def test_every_postgres_family_is_exported(topology: Topology, daemon: DaemonProcess) -> None:
    """Every catalogued PostgreSQL/replication family appears in a scrape (safe_wal_size
    only exists with max_slot_wal_keep_size set, so the test sets it for a while)."""
    su = topology.superuser_dsn(topology.primary)
    with psycopg.connect(su, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        wanted = {spec.name for spec in c.CATALOGUE.values() if spec.section in PG_SECTIONS}
        with app_connection(topology, "tw-reader") as conn:
            def all_there() -> set[str]:
                conn.execute("SELECT count(*) FROM items")  # blocks accessed: a hit ratio
                conn.commit()
                return wanted - daemon.scrape().names()

            deadline = time.monotonic() + 10
            missing = all_there()
            while missing and time.monotonic() < deadline:
                time.sleep(0.3)
                missing = all_there()
        assert not missing, f"never scraped: {sorted(missing)}"
        s = daemon.scrape()
        assert s.value(c.PG_SLOT_SAFE_WAL_SIZE.name, slot="replica_1", **PRIMARY) > 0  # type: ignore[operator]
        for target in (PRIMARY, REPLICA):
            for collector in ("pg_status", "pg_activity", "pg_database", "pg_slots"):
                assert s.value(c.COLLECTOR_SUCCESS.name, collector=collector, **target) == 1
        assert s.value(c.COLLECTOR_SUCCESS.name, collector="pg_replication", **PRIMARY) == 1
        assert s.value(c.COLLECTOR_SUCCESS.name, collector="pg_replica", **REPLICA) == 1
    finally:
        with psycopg.connect(su, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
            conn.execute("SELECT pg_reload_conf()")


def test_role_and_limits(topology: Topology, daemon: DaemonProcess) -> None:
    s = daemon.scrape()
    assert s.value(c.PG_IN_RECOVERY.name, **PRIMARY) == 0
    assert s.value(c.PG_IN_RECOVERY.name, **REPLICA) == 1
    expected = float(topology.psql(topology.primary, "SHOW max_connections"))
    assert s.value(c.PG_MAX_CONNECTIONS.name, **PRIMARY) == expected
    # role-specific families stay on their side
    assert not s.find(c.PG_REPLICA_LAG_SECONDS.name, **PRIMARY)
    assert not s.find(c.PG_REPLICAS_STREAMING.name, **REPLICA)


def test_connections_by_state_application_and_oldest_transaction(
    topology: Topology, daemon: DaemonProcess
) -> None:
    def apps(s: Scrape) -> float | None:
        return s.value(c.PG_APPLICATION_CONNECTIONS.name, application_name="tw-billing",
                       **PRIMARY)

    held = [app_connection(topology, "tw-billing") for _ in range(3)]
    try:
        held[0].execute("SELECT 1")  # psycopg opens a transaction: idle in transaction
        for conn in held[1:]:
            conn.autocommit = True
            conn.execute("SELECT 1")
        opened = time.monotonic()

        def seen() -> Scrape | None:
            s = daemon.scrape()
            ok = (apps(s) == 3
                  and (s.value(c.PG_CONNECTIONS.name, state="idle in transaction", **PRIMARY)
                       or 0) >= 1
                  and (s.value(c.PG_CONNECTIONS.name, state="idle", **PRIMARY) or 0) >= 2
                  and (s.value(c.PG_OLDEST_TRANSACTION.name, **PRIMARY) or 0) >= 2)
            return s if ok else None

        s = wait_until(seen, 6, "3 tw-billing backends, one idle in transaction for 2 s")
        oldest = s.value(c.PG_OLDEST_TRANSACTION.name, **PRIMARY)
        assert oldest is not None and oldest <= time.monotonic() - opened + 0.5
        # the poll's own transaction is never the oldest: the replica has none open
        assert (daemon.scrape().value(c.PG_OLDEST_TRANSACTION.name, **REPLICA) or 0) < 1
    finally:
        for conn in held:
            conn.close()
    wait_until(lambda: apps(daemon.scrape()) is None, 4, "tw-billing gone after close")
    wait_until(lambda: daemon.scrape().value(c.PG_OLDEST_TRANSACTION.name, **PRIMARY) == 0, 4,
               "oldest transaction back to 0")


def test_block_counters_and_hit_ratio(topology: Topology, daemon: DaemonProcess) -> None:
    def hits(s: Scrape) -> float:
        return s.value(c.PG_BLOCKS_HIT.name, datname="app", **PRIMARY) or 0.0

    before = hits(daemon.scrape())
    with app_connection(topology, "tw-reader") as conn:
        conn.autocommit = True

        def ratio() -> float | None:
            conn.execute("SELECT count(*) FROM items")
            s = daemon.scrape()
            return s.value(c.PG_CACHE_HIT_RATIO.name, datname="app", **PRIMARY)

        value = wait_until(lambda: ratio() is not None and ratio(), 6, "hit ratio of app")
        assert 0 < value <= 1
    assert hits(daemon.scrape()) > before
    s = daemon.scrape()
    # nobody can connect to template0: no block accessed, so no ratio (not 0, not NaN)
    assert s.value(c.PG_BLOCKS_HIT.name, datname="template0", **PRIMARY) is not None
    assert s.value(c.PG_CACHE_HIT_RATIO.name, datname="template0", **PRIMARY) is None


def test_daemon_is_a_least_privilege_client(topology: Topology, daemon: DaemonProcess) -> None:
    """The daemon's sessions are the monitor role, which is no superuser and holds only
    pg_monitor; everything above worked with that."""
    row = topology.psql(topology.primary, """
        SELECT string_agg(DISTINCT a.usename || ':' || r.rolsuper, ',')
        FROM pg_stat_activity a JOIN pg_roles r ON r.rolname = a.usename
        WHERE a.application_name = 'tierwatch'""")
    assert row == "monitor:false"
    granted = topology.psql(topology.primary, """
        SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m
        JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
        WHERE u.rolname = 'monitor'""")
    assert granted == "pg_monitor"

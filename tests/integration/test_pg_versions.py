"""The PostgreSQL catalogue on the other major versions this machine can run: 16, 17 and 18.

The rest of the suite runs on the machine's PostgreSQL 15. Here the same topology (a primary
and a `pg_basebackup -R` streaming replica, the `monitor` role with only pg_monitor) runs on
server builds from PyPI wheels (tests/serverwheels.py), and the daemon must report every
PostgreSQL and replication metric of the catalogue with every collector succeeding, name the
replica after its configured target, and date a paused replay's lag by the primary's WAL as
it does on 15.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from exporter import catalogue as c
from exporter.catalogue import CATALOGUE
from tests.serverwheels import PG_MAJORS, pg_bin
from tests.support import DaemonProcess, Scrape, scrape_with_families, wait_until
from tests.topology import Topology

pytestmark = pytest.mark.integration

INTERVAL = 1.0
PRIMARY = {"cluster": "main", "target": "primary"}
REPLICA = {"cluster": "main", "target": "replica-1"}
PG_SECTIONS = {"postgres", "replication-primary", "replication-replica"}
PG_FAMILIES = {name for name, spec in CATALOGUE.items() if spec.section in PG_SECTIONS}
STALL_SECONDS = 4.0


@pytest.fixture(scope="module", params=PG_MAJORS, ids=lambda v: f"pg{v}")
def versioned(request: pytest.FixtureRequest) -> Iterator[tuple[int, Topology, DaemonProcess]]:
    major: int = request.param
    with Topology(pg_bin=pg_bin(major)) as topo:
        # a WAL limit for the slot, so wal_status and safe_wal_size are reported
        topo.psql(topo.primary, "ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'")
        topo.psql(topo.primary, "SELECT pg_reload_conf()")
        daemon = DaemonProcess(topo.tierwatch_config(poll_interval=INTERVAL)).start()
        try:
            yield major, topo, daemon
        finally:
            daemon.stop()


def collectors_failing(scrape: Scrape) -> list[str]:
    return [f"{s.labels['target']}/{s.labels['collector']}"
            for s in scrape.find(c.COLLECTOR_SUCCESS.name, kind="postgres") if s.value != 1]


def test_every_postgres_metric_on_this_version(
    versioned: tuple[int, Topology, DaemonProcess],
) -> None:
    major, topo, daemon = versioned
    assert topo.psql(topo.primary, "SHOW server_version_num").startswith(str(major))

    scrape = scrape_with_families(
        daemon, topo, PG_FAMILIES, 20,
        also=lambda s: all(s.value("tierwatch_up", **t) == 1 for t in (PRIMARY, REPLICA)))
    assert collectors_failing(scrape) == [], daemon.log_tail()
    assert scrape.find(c.COLLECTOR_SUCCESS.name, **PRIMARY)
    assert scrape.value(c.PG_IN_RECOVERY.name, **PRIMARY) == 0
    assert scrape.value(c.PG_IN_RECOVERY.name, **REPLICA) == 1
    assert scrape.value(c.PG_REPLICAS_STREAMING.name, **PRIMARY) == 1
    assert scrape.value(c.PG_WAL_RECEIVER_UP.name, **REPLICA) == 1
    # the walsender is named after the configured replica target
    assert scrape.value(c.PG_REPLICATION_LAG_BYTES.name, replica="replica-1", stage="replay",
                        **PRIMARY) is not None
    assert scrape.value(c.PG_MAX_CONNECTIONS.name, **PRIMARY) == 50
    for target in (PRIMARY, REPLICA):
        (info,) = scrape.find(c.PG_SERVER_INFO.name, **target)
        assert info.labels["version"].startswith(f"{major}."), info.labels
    assert "Traceback" not in daemon.log_text()


def test_paused_replay_lag_on_this_version(
    versioned: tuple[int, Topology, DaemonProcess],
) -> None:
    major, topo, daemon = versioned

    def replica_lag() -> float | None:
        return daemon.scrape().value(c.PG_REPLICA_LAG_SECONDS.name, **REPLICA)

    wait_until(lambda: (lag := replica_lag()) is not None and lag < 1.0, 10,
               f"replica lag < 1 s on PostgreSQL {major} before the pause")
    topo.psql(topo.replica, "SELECT pg_wal_replay_pause()")
    try:
        paused_at = time.monotonic()
        with psycopg.connect(topo.superuser_dsn(topo.primary, "app"), autocommit=True) as conn:
            while time.monotonic() - paused_at < STALL_SECONDS:
                conn.execute("INSERT INTO items(payload) VALUES ('stall')")
                time.sleep(0.1)
        lag = wait_until(lambda: (v := replica_lag()) is not None and v >= STALL_SECONDS and v,
                         2 * INTERVAL + 2, f"replica lag >= {STALL_SECONDS:g} s while paused")
        stalled = time.monotonic() - paused_at
        assert lag <= stalled + 1.0, (lag, stalled)
        scrape = daemon.scrape()
        assert scrape.value(c.PG_REPLAY_PAUSED.name, **REPLICA) == 1
        assert (scrape.value(c.PG_REPLICA_LAG_BYTES.name, **REPLICA) or 0) > 0
    finally:
        topo.psql(topo.replica, "SELECT pg_wal_replay_resume()")
    wait_until(lambda: (v := replica_lag()) is not None and v < 1.0, 2 * INTERVAL + 2,
               "replica lag back under 1 s after resume")
    assert collectors_failing(daemon.scrape()) == []

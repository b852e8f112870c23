"""PgBouncer against real servers: a saturated pool, recovery, connection limits below the
pool size, and a restart underneath.

Every test runs on PgBouncer 1.18 (Debian 12's, in the shared topology) and 1.24 (Debian 13's,
run by tests/trixieservers.py in a topology of its own). The daemon runs as a child process
polling every second; values are read from its /metrics.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.rows import dict_row

from tests import trixieservers
from tests.support import DaemonProcess, Scrape, wait_until
from tests.topology import Topology

INTERVAL = 1.0
POOL = {"cluster": "main", "target": "bouncer", "database": "app", "user": "app"}
BOUNCER = {"cluster": "main", "target": "bouncer"}
APP = {"database": "app", **BOUNCER}
VERSIONS = ("1.18", "1.24")  # 1.18: Debian 12's pgbouncer; 1.24: trixieservers


@pytest.fixture(scope="module", params=VERSIONS)
def bouncer(request: pytest.FixtureRequest) -> Iterator[Topology]:
    """A topology whose PgBouncer is the version of the parameter."""
    if request.param == "1.18":
        topo = request.getfixturevalue("topology")
        assert console(topo, "SHOW VERSION")[0]["version"].startswith("PgBouncer 1.18.")
        yield topo
        return
    with Topology(pgbouncer_command=trixieservers.command("pgbouncer-1.24")) as topo:
        assert console(topo, "SHOW VERSION")[0]["version"].startswith("PgBouncer 1.24.")
        yield topo


def console(topo: Topology, command: str) -> list[dict[str, Any]]:
    """The rows of one admin-console command, as the stats user `monitor`."""
    with psycopg.connect(topo.monitor_dsn(topo.pgbouncer), password=topo.monitor_password,
                         autocommit=True, prepare_threshold=None, row_factory=dict_row) as conn:
        return conn.execute(command).fetchall()


def settings_of(topo: Topology) -> tuple[int, int]:
    """(max_db_connections of `app` as SHOW DATABASES has it, global max_user_connections)."""
    (app,) = [row for row in console(topo, "SHOW DATABASES") if row["name"] == "app"]
    (user,) = [row for row in console(topo, "SHOW CONFIG") if row["key"] == "max_user_connections"]
    return int(app["max_connections"]), int(user["value"])


@contextmanager
def limited(topo: Topology, db_max: int = 0, user_max: int = 0) -> Iterator[None]:
    """PgBouncer reloaded (SIGHUP) with `max_db_connections` for `app` and a global
    `max_user_connections`, starting with no server connection open (an open one would be
    reused whatever the limits: they bind only when PgBouncer opens a new one). Both are set
    back to 0 (no limit) explicitly on exit, and the shared PgBouncer is reloaded again."""
    assert topo.workdir is not None
    ini = topo.workdir / "pgbouncer" / "pgbouncer.ini"
    original = ini.read_text()

    def reload(db: int, user: int) -> None:
        ini.write_text(original.replace(" dbname=app\n", f" dbname=app max_db_connections={db}\n")
                       .replace("[pgbouncer]\n", f"[pgbouncer]\nmax_user_connections = {user}\n"))
        topo.pgbouncer.kill(signal.SIGHUP)
        wait_until(lambda: settings_of(topo) == (db, user), 5, f"PgBouncer reloaded: {db}, {user}")

    reload(db_max, user_max)
    try:
        topo.psql(topo.primary, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE usename = 'app'")
        wait_until(lambda: [r for r in console(topo, "SHOW DATABASES")
                            if r["name"] == "app" and r["current_connections"] == 0],
                   5, "PgBouncer without server connections for app")
        yield
    finally:
        if topo.pgbouncer.is_running():
            reload(0, 0)
        ini.write_text(original)


def bouncer_only(topo: Topology) -> str:
    doc = yaml.safe_load(topo.tierwatch_config(poll_interval=INTERVAL))
    for cluster in doc["clusters"]:
        cluster.pop("postgres", None)
        cluster.pop("redis", None)
    return yaml.safe_dump(doc)


def app_connection(topo: Topology, autocommit: bool, dsn: str | None = None
                   ) -> psycopg.Connection:
    # transaction pooling carries no prepared statements (DESIGN §8)
    return psycopg.connect(dsn or topo.app_dsn_via_pgbouncer(), prepare_threshold=None,
                           autocommit=autocommit, connect_timeout=5)


@contextmanager
def saturated_pool(topo: Topology, waiting: int, holding: int = 2, dsn: str | None = None
                   ) -> Iterator[list[threading.Thread]]:
    """Holds `holding` server connections of the `app` pool (default_pool_size 2: both) in
    open transactions and queues `waiting` more clients behind them; releases on exit."""
    holders = []
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []
    try:
        for _ in range(holding):
            conn = app_connection(topo, autocommit=False, dsn=dsn)
            conn.execute("SELECT pg_sleep(0.05)")  # the transaction stays open: server held
            holders.append(conn)

        def queue() -> None:
            try:
                with app_connection(topo, autocommit=True, dsn=dsn) as conn:
                    conn.execute("SELECT 1")  # waits for a server until the holders let go
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=queue, daemon=True) for _ in range(waiting)]
        for thread in threads:
            thread.start()
        yield threads
    finally:
        for conn in holders:
            conn.rollback()
            conn.close()
        for thread in threads:
            thread.join(timeout=10)
    assert not errors, errors


def value_of(daemon: DaemonProcess, name: str, **labels: str) -> float | None:
    return daemon.scrape().value(name, **labels)


def test_saturated_pool_shows_waiting_clients_and_recovers(
    request: pytest.FixtureRequest, bouncer: Topology,
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    with app_connection(bouncer, autocommit=True) as conn:  # pools are created lazily
        conn.execute("SELECT 1")
    daemon = daemon_factory(bouncer_only(bouncer))

    def baseline() -> Scrape | None:
        scrape = daemon.scrape()
        ok = (scrape.value("tierwatch_pgbouncer_clients", state="waiting", **POOL) == 0
              and scrape.value("tierwatch_pgbouncer_pool_saturation_ratio", **POOL) == 0)
        return scrape if ok else None

    before = wait_until(baseline, 5, "an idle app pool in the daemon's scrape")
    assert before.value("tierwatch_pgbouncer_pool_size", database="app", **BOUNCER) == 2
    assert before.value("tierwatch_pgbouncer_max_wait_seconds", **POOL) == 0
    assert before.value("tierwatch_pgbouncer_max_client_connections", **BOUNCER) == 50
    assert not before.find("tierwatch_pgbouncer_clients", database="pgbouncer")

    with saturated_pool(bouncer, waiting=3):
        queued_at = time.monotonic()

        def saturated() -> Scrape | None:
            scrape = daemon.scrape()
            ok = (scrape.value("tierwatch_pgbouncer_clients", state="waiting", **POOL) == 3
                  and (scrape.value("tierwatch_pgbouncer_pool_saturation_ratio", **POOL) or 0)
                  >= 1
                  and (scrape.value("tierwatch_pgbouncer_max_wait_seconds", **POOL) or 0) > 0)
            return scrape if ok else None

        during = wait_until(saturated, 2 * INTERVAL + 0.5,
                            "3 waiting clients, saturation >= 1 and max wait > 0")
        seen_after = time.monotonic() - queued_at
        # 2 servers active + 3 clients waiting over a pool of 2
        assert during.value("tierwatch_pgbouncer_pool_saturation_ratio", **POOL) == 2.5
        assert during.value("tierwatch_pgbouncer_servers", state="active", **POOL) == 2
        assert during.value("tierwatch_pgbouncer_clients", state="active", **POOL) == 2
        # 5 app clients + the daemon's own console session at least
        assert (during.value("tierwatch_pgbouncer_client_connections", **BOUNCER) or 0) >= 6
        print(f"\nsaturation visible {seen_after:.2f}s after queueing; max wait "
              f"{during.value('tierwatch_pgbouncer_max_wait_seconds', **POOL):.3f}s")

    after = wait_until(baseline, 2 * INTERVAL + 0.5, "the app pool back at baseline")
    assert after.value("tierwatch_pgbouncer_max_wait_seconds", **POOL) == 0
    # the waits were counted when the queued clients finally got a server
    waited = after.value("tierwatch_pgbouncer_wait_seconds_total", database="app", **BOUNCER)
    assert waited is not None and waited > (
        before.value("tierwatch_pgbouncer_wait_seconds_total", database="app", **BOUNCER) or 0)
    # past psycopg's prepare threshold of 5 runs on the same console session, still fine
    final = wait_until(
        lambda: ((s := daemon.scrape()).value("tierwatch_poll_duration_seconds_count",
                                              **BOUNCER) or 0) >= 7 and s,
        8 * INTERVAL, "7 polls of the bouncer")
    assert final.value("tierwatch_up", **BOUNCER) == 1
    assert final.value("tierwatch_poll_errors_total", **BOUNCER) == 0
    # SHOW STATS: the 2 held and 3 queued transactions, each given a server (counted from 1.23)
    for name in ("tierwatch_pgbouncer_transactions_total",
                 "tierwatch_pgbouncer_server_assignments_total"):
        if name.endswith("assignments_total") and request.node.callspec.params["bouncer"] == "1.18":
            assert final.value(name, **APP) is None
            continue
        assert (final.value(name, **APP) or 0) - (before.value(name, **APP) or 0) >= 5, name
    for collector in ("pgbouncer_pools", "pgbouncer_stats", "pgbouncer_lists"):
        assert final.value("tierwatch_collector_success", collector=collector, **BOUNCER) == 1


def test_restart_under_the_daemon_goes_down_and_comes_back(
    bouncer: Topology, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    daemon = daemon_factory(bouncer_only(bouncer))
    wait_until(lambda: value_of(daemon, "tierwatch_up", **BOUNCER) == 1, 5, "bouncer up")
    try:
        bouncer.pgbouncer.stop()
        down = wait_until(
            lambda: (s := daemon.scrape()).value("tierwatch_up", **BOUNCER) == 0 and s,
            3 * INTERVAL + 3, "tierwatch_up 0 while PgBouncer is stopped")
        # a failed poll removes the target's series instead of freezing them
        assert not down.find("tierwatch_pgbouncer_pool_size", **BOUNCER)
    finally:
        bouncer.pgbouncer.start()
    up = wait_until(
        lambda: (s := daemon.scrape()).value("tierwatch_up", **BOUNCER) == 1 and s,
        3 * INTERVAL + 3, "tierwatch_up back to 1 after PgBouncer restarted")
    # lazy pools: right after the restart only the pool size is known, no app pool yet
    assert up.value("tierwatch_pgbouncer_pool_size", database="app", **BOUNCER) == 2
    assert not up.find("tierwatch_pgbouncer_clients", database="app", **BOUNCER)
    with app_connection(bouncer, autocommit=True) as conn:
        conn.execute("SELECT 1")
        wait_until(lambda: value_of(daemon, "tierwatch_pgbouncer_clients", state="active",
                                    **POOL) == 1, 2 * INTERVAL + 0.5, "the app pool reappearing")


@pytest.mark.parametrize("limit", ["max_db_connections", "max_user_connections"])
def test_a_connection_limit_below_the_pool_size_is_what_saturates(
    bouncer: Topology, daemon_factory: Callable[..., DaemonProcess], limit: str
) -> None:
    """A limit of 1 under a pool_size of 2: one server held, two clients queue although the
    pool has room, and saturation divides by the limit. max_user_connections is read from
    SHOW USERS on 1.24 and from SHOW CONFIG on 1.18 (whose SHOW USERS lacks it)."""
    daemon = daemon_factory(bouncer_only(bouncer))
    settings = {"db_max": 1} if limit == "max_db_connections" else {"user_max": 1}
    with limited(bouncer, **settings), saturated_pool(bouncer, waiting=2, holding=1):

        def capped() -> Scrape | None:
            scrape = daemon.scrape()
            ok = (scrape.value("tierwatch_pgbouncer_clients", state="waiting", **POOL) == 2
                  and scrape.value("tierwatch_pgbouncer_servers", state="active", **POOL) == 1)
            return scrape if ok else None

        during = wait_until(capped, 2 * INTERVAL + 0.5, "2 clients waiting behind 1 server")
        # PgBouncer opened no second server: the limit binds before pool_size
        assert during.value("tierwatch_pgbouncer_servers", state="idle", **POOL) == 0
        assert during.value("tierwatch_pgbouncer_pool_size", **APP) == 2
        assert during.value("tierwatch_pgbouncer_database_max_server_connections", **APP) == (
            1 if limit == "max_db_connections" else 0)
        # (1 active + 2 waiting) / the limit 1, where pool_size alone would say 1.5
        assert during.value("tierwatch_pgbouncer_pool_saturation_ratio", **POOL) == 3
    after = wait_until(
        lambda: (s := daemon.scrape()).value("tierwatch_pgbouncer_pool_saturation_ratio",
                                             **POOL) == 0 and s,
        2 * INTERVAL + 0.5, "the pool idle again without the limit")
    assert after.value("tierwatch_pgbouncer_database_max_server_connections", **APP) == 0


@pytest.fixture(autouse=True)
def _pgbouncer_running(bouncer: Topology) -> Iterator[None]:
    yield
    if not bouncer.pgbouncer.is_running():  # leave the shared bouncer as found
        bouncer.pgbouncer.start()


NEWER_COLUMNS = {  # family -> the labels of one series every server must have
    "tierwatch_pgbouncer_server_assignments_total": APP,
    "tierwatch_pgbouncer_database_client_connections": APP,
    "tierwatch_pgbouncer_database_max_client_connections": APP,
    "tierwatch_pgbouncer_client_parses_total": APP,
    "tierwatch_pgbouncer_server_parses_total": APP,
    "tierwatch_pgbouncer_binds_total": APP,
    "tierwatch_pgbouncer_user_server_connections": {"user": "app", **BOUNCER},
    "tierwatch_pgbouncer_user_max_server_connections": {"user": "app", **BOUNCER},
    "tierwatch_pgbouncer_user_client_connections": {"user": "app", **BOUNCER},
    "tierwatch_pgbouncer_user_max_client_connections": {"user": "app", **BOUNCER},
}


def test_columns_of_newer_versions_are_exported(
    bouncer: Topology, request: pytest.FixtureRequest,
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """SHOW DATABASES / USERS / STATS columns 1.18 lacks: present on 1.24, absent on 1.18."""
    with psycopg.connect(bouncer.app_dsn_via_pgbouncer(), autocommit=True) as conn:
        conn.execute("SELECT 1")  # the app pool and its user row exist from here on
        daemon = daemon_factory(bouncer.tierwatch_config(poll_interval=INTERVAL))
        scrape = wait_until(
            lambda: (s := daemon.scrape()).value("tierwatch_pgbouncer_pool_size", **APP)
            is not None and s, 10, "a bouncer poll")
    newer = request.node.callspec.params["bouncer"] != "1.18"
    for name, labels in NEWER_COLUMNS.items():
        assert (scrape.value(name, **labels) is not None) is newer, name
    assert scrape.value("tierwatch_pgbouncer_database_max_client_connections", **APP) in (
        None, 0.0)

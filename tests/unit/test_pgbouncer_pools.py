"""SHOW POOLS + SHOW DATABASES parsing on rows captured from PgBouncer 1.18 and 1.24."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter import catalogue as c
from exporter.collectors.pgbouncer_pools import (
    SHOW_CONFIG,
    SHOW_DATABASES,
    SHOW_POOLS,
    SHOW_USERS,
    PgbouncerPools,
)
from exporter.model import Kind, Metric, PollContext, TargetId
from tests.support import REPO

DATA = REPO / "tests" / "data"
CTX = PollContext(TargetId("main", "bouncer", Kind.PGBOUNCER), now=1000.0)


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def values(output: list[Any]) -> dict[tuple[str, tuple[str, ...]], float]:
    out: dict[tuple[str, tuple[str, ...]], float] = {}
    for m in output:
        assert isinstance(m, Metric)
        key = (m.spec.name, m.labels)
        assert key not in out, f"{key} emitted twice"
        out[key] = m.value
    return out


def parse(doc: dict[str, Any]) -> dict[tuple[str, tuple[str, ...]], float]:
    collector = PgbouncerPools()
    results = {q: doc[q] for q in collector.queries(CTX)}
    return values(collector.parse(results, CTX))


def test_saturated_pool_on_1_18() -> None:
    got = parse(load("pgbouncer_1.18_saturated.json"))
    assert got[(c.BOUNCER_CLIENTS.name, ("app", "app", "waiting"))] == 3
    assert got[(c.BOUNCER_CLIENTS.name, ("app", "app", "active"))] == 2
    assert got[(c.BOUNCER_SERVERS.name, ("app", "app", "active"))] == 2
    assert got[(c.BOUNCER_SERVERS.name, ("app", "app", "idle"))] == 0
    # maxwait 1 s + maxwait_us 494457 µs
    assert got[(c.BOUNCER_MAX_WAIT.name, ("app", "app"))] == pytest.approx(1.494457)
    assert got[(c.BOUNCER_POOL_SIZE.name, ("app",))] == 2
    # (2 active servers + 3 waiting clients) / pool size 2
    assert got[(c.BOUNCER_SATURATION.name, ("app", "app"))] == pytest.approx(2.5)
    assert got[(c.BOUNCER_RESERVE_POOL_SIZE.name, ("app",))] == 0  # 1.18 column `reserve_pool`
    assert got[(c.BOUNCER_CANCEL_CONNECTIONS.name, ("app", "app", "server_being_canceled"))] == 0


def test_admin_pseudo_database_is_skipped() -> None:
    got = parse(load("pgbouncer_1.18_saturated.json"))
    assert not [k for k in got if "pgbouncer" in k[1]]


def test_fresh_start_has_pool_size_but_no_pool_series() -> None:
    # lazy pools: only the admin pool exists until a client logs in to `app`
    got = parse(load("pgbouncer_1.18_fresh.json"))
    assert got[(c.BOUNCER_POOL_SIZE.name, ("app",))] == 2
    assert not [k for k in got if k[0] in (c.BOUNCER_CLIENTS.name, c.BOUNCER_SATURATION.name)]


def test_idle_pool_has_zero_saturation() -> None:
    got = parse(load("pgbouncer_1.18_idle.json"))
    assert got[(c.BOUNCER_SATURATION.name, ("app", "app"))] == 0
    assert got[(c.BOUNCER_MAX_WAIT.name, ("app", "app"))] == 0


def test_saturated_pool_on_1_24() -> None:
    got = parse(load("pgbouncer_1.24_saturated.json"))
    assert got[(c.BOUNCER_CLIENTS.name, ("app", "app", "waiting"))] == 3
    assert got[(c.BOUNCER_SERVERS.name, ("app", "app", "active"))] == 2
    assert got[(c.BOUNCER_MAX_WAIT.name, ("app", "app"))] == pytest.approx(0.131328)
    assert got[(c.BOUNCER_POOL_SIZE.name, ("app",))] == 2
    assert got[(c.BOUNCER_SATURATION.name, ("app", "app"))] == pytest.approx(2.5)
    assert got[(c.BOUNCER_RESERVE_POOL_SIZE.name, ("app",))] == 0  # `reserve_pool_size` now
    assert got[(c.BOUNCER_DB_MAX_SERVER_CONNECTIONS.name, ("app",))] == 0
    assert got[(c.BOUNCER_CANCEL_CONNECTIONS.name, ("app", "app", "client_active"))] == 0
    assert not [k for k in got if "pgbouncer" in k[1]]


def test_limits_below_the_pool_size_on_1_24() -> None:
    """app: max_db_connections=1; [users] monitor = pool_size=3 max_user_connections=1."""
    got = parse(load("pgbouncer_1.24_limited.json"))
    # 1 server + 2 waiting behind the database limit 1 (pool_size 2 would say 1.5)
    assert got[(c.BOUNCER_SATURATION.name, ("app", "app"))] == pytest.approx(3)
    assert got[(c.BOUNCER_DB_MAX_SERVER_CONNECTIONS.name, ("app",))] == 1
    # 1 server + 1 waiting behind the user limit 1 (its own pool_size 3 would say 2/3)
    assert got[(c.BOUNCER_SATURATION.name, ("app2", "monitor"))] == pytest.approx(2)
    # no limit binds: pool_size 2
    assert got[(c.BOUNCER_SATURATION.name, ("app2", "app"))] == pytest.approx(0.5)
    assert got[(c.BOUNCER_POOL_SIZE.name, ("app2",))] == 2


def test_fresh_and_idle_on_1_24() -> None:
    fresh = parse(load("pgbouncer_1.24_fresh.json"))
    assert fresh[(c.BOUNCER_POOL_SIZE.name, ("app",))] == 2
    assert not [k for k in fresh if k[0] in (c.BOUNCER_CLIENTS.name, c.BOUNCER_SATURATION.name)]
    idle = parse(load("pgbouncer_1.24_idle.json"))
    assert idle[(c.BOUNCER_SATURATION.name, ("app", "app"))] == 0
    assert idle[(c.BOUNCER_MAX_WAIT.name, ("app", "app"))] == 0


def test_old_columns_missing_and_unknown_ones_ignored() -> None:
    # a pre-1.18 row: cl_cancel_req, no maxwait_us, no cancel split; plus a future column
    row = {"database": "app", "user": "app", "cl_active": 3, "cl_waiting": 1,
           "cl_cancel_req": 0, "sv_active": 2, "sv_idle": 0, "sv_used": 0, "sv_tested": 0,
           "sv_login": 0, "maxwait": 4, "pool_mode": "session", "sv_from_the_future": 9}
    doc = {SHOW_POOLS: [row], SHOW_USERS: [{"name": "app", "pool_mode": None}],
           SHOW_DATABASES: [{"name": "app", "pool_size": 2}],
           SHOW_CONFIG: [{"key": "default_pool_size", "value": "20"}]}
    got = parse(doc)
    assert got[(c.BOUNCER_MAX_WAIT.name, ("app", "app"))] == 4
    assert got[(c.BOUNCER_SATURATION.name, ("app", "app"))] == pytest.approx(1.5)
    assert not [k for k in got if k[0] == c.BOUNCER_CANCEL_CONNECTIONS.name]


def test_no_usable_pool_size_means_no_saturation() -> None:
    doc = {SHOW_POOLS: [{"database": "app", "user": "app", "sv_active": 1, "cl_waiting": 0}],
           SHOW_USERS: [], SHOW_DATABASES: [{"name": "app", "pool_size": 0}], SHOW_CONFIG: []}
    got = parse(doc)
    assert (c.BOUNCER_SATURATION.name, ("app", "app")) not in got
    # 0 is what SHOW DATABASES says (1.24: no pool limit), exported as such, never divided by
    assert got[(c.BOUNCER_POOL_SIZE.name, ("app",))] == 0

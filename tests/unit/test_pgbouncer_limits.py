"""The server-connection limit a pool's saturation divides by, on real 1.18 and 1.24 rows."""

from __future__ import annotations

import copy

import pytest

from exporter.collectors.pgbouncer_limits import ConnectionLimits, server_limit
from exporter.collectors.pgbouncer_pools import SHOW_CONFIG, SHOW_DATABASES, SHOW_USERS
from tests.unit.test_pgbouncer_pools import load


@pytest.mark.parametrize(("pool_size", "db_max", "user_max", "expected"), [
    (2, None, None, 2),     # no database or user limit: pool_size
    (2, 0, 0, 2),           # 0 is no limit
    (2, 1, 0, 1),           # the database limit binds first
    (2, 0, 1, 1),           # the user limit binds first
    (3, 2, 1, 1),           # the smallest of the three
    (2, 5, 4, 2),           # limits above pool_size never bind
    (None, 4, 0, 4),        # no pool_size (0 means unlimited since 1.24): the other limits
    (0, 0, 0, None),        # nothing bounds the pool: no saturation
    (-1, -1, None, None),   # negative is unset too
])
def test_the_smallest_set_limit_binds(pool_size: float | None, db_max: float | None,
                                      user_max: float | None, expected: float | None) -> None:
    assert server_limit(pool_size, db_max, user_max) == expected


def limits_of(name: str) -> ConnectionLimits:
    doc = load(name)
    return ConnectionLimits.from_rows(doc[SHOW_DATABASES], doc[SHOW_USERS], doc[SHOW_CONFIG])


def test_1_24_database_and_user_limits_from_show_databases_and_users() -> None:
    # app: max_db_connections=1; [users] monitor = pool_size=3 max_user_connections=1
    limits = limits_of("pgbouncer_1.24_limited.json")
    assert limits.per_database == {"app": 1, "app2": 0}  # the admin database is left out
    assert limits.per_user["monitor"] == 1 and limits.per_user["app"] == 0
    assert limits.pool_limit(2, "app", "app") == 1
    assert limits.pool_limit(3, "app2", "monitor") == 1
    assert limits.pool_limit(2, "app2", "app") == 2


def test_1_18_user_limit_falls_back_to_show_config() -> None:
    # 1.18's SHOW USERS is name and pool_mode only: the global setting stands for every user
    doc = copy.deepcopy(load("pgbouncer_1.18_saturated.json"))
    assert set(doc[SHOW_USERS][0]) == {"name", "pool_mode"}
    doc[SHOW_CONFIG].append({"key": "max_user_connections", "value": "1", "default": "0",
                             "changeable": "yes"})
    limits = ConnectionLimits.from_rows(doc[SHOW_DATABASES], doc[SHOW_USERS], doc[SHOW_CONFIG])
    assert limits.per_user == {}
    assert limits.pool_limit(2, "app", "app") == 1
    assert limits_of("pgbouncer_1.18_saturated.json").pool_limit(2, "app", "app") == 2


def test_unreadable_limit_cells_are_no_limit() -> None:
    limits = ConnectionLimits.from_rows(
        [{"name": "app", "max_connections": None}, {"name": ""}],
        [{"name": "app", "max_user_connections": "n/a"}],
        [{"key": "max_user_connections", "value": ""}])
    assert limits.pool_limit(2, "app", "app") == 2
    assert limits.pool_limit(None, "other", "nobody") is None

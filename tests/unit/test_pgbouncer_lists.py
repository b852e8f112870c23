"""SHOW LISTS + SHOW CONFIG parsing: all client connections against max_client_conn."""

from __future__ import annotations

from exporter import catalogue as c
from exporter.collectors.pgbouncer_lists import SHOW_LISTS, PgbouncerLists
from exporter.collectors.pgbouncer_pools import SHOW_CONFIG
from tests.unit.test_pgbouncer_pools import CTX, load, values


def parse(name: str) -> dict[tuple[str, tuple[str, ...]], float]:
    doc = load(name)
    return values(PgbouncerLists().parse({q: doc[q] for q in (SHOW_LISTS, SHOW_CONFIG)}, CTX))


def test_1_18_saturated() -> None:
    got = parse("pgbouncer_1.18_saturated.json")
    # 2 clients in transactions + 3 waiting + the console session that asked
    assert got[(c.BOUNCER_CLIENT_CONNECTIONS.name, ())] == 6
    assert got[(c.BOUNCER_MAX_CLIENT_CONNECTIONS.name, ())] == 50
    assert got[(c.BOUNCER_SERVER_CONNECTIONS.name, ())] == 2
    assert got[(c.BOUNCER_POOLS.name, ())] == 2


def test_1_24_limited() -> None:
    # 1.24 adds peers and peer_pools, which are not read
    got = parse("pgbouncer_1.24_limited.json")
    # 3 servers held, 3 clients waiting, the console session
    assert got[(c.BOUNCER_CLIENT_CONNECTIONS.name, ())] == 7
    assert got[(c.BOUNCER_MAX_CLIENT_CONNECTIONS.name, ())] == 50
    assert got[(c.BOUNCER_SERVER_CONNECTIONS.name, ())] == 3
    assert got[(c.BOUNCER_LOGIN_CLIENTS.name, ())] == 0
    assert got[(c.BOUNCER_POOLS.name, ())] == 4

"""SHOW STATS parsing: counters in base units, microseconds turned into seconds."""

from __future__ import annotations

import pytest

from exporter import catalogue as c
from exporter.collectors.pgbouncer_stats import SHOW_STATS, PgbouncerStats
from tests.unit.test_pgbouncer_pools import CTX, load, values


def parse(name: str) -> dict[tuple[str, tuple[str, ...]], float]:
    return values(PgbouncerStats().parse({SHOW_STATS: load(name)[SHOW_STATS]}, CTX))


def test_1_18_counters() -> None:
    got = parse("pgbouncer_1.18_saturated.json")
    assert got[(c.BOUNCER_TRANSACTIONS.name, ("app",))] == 6
    assert got[(c.BOUNCER_QUERIES.name, ("app",))] == 8
    assert got[(c.BOUNCER_WAIT_SECONDS.name, ("app",))] == pytest.approx(15641e-6)
    assert got[(c.BOUNCER_QUERY_SECONDS.name, ("app",))] == pytest.approx(11980e-6)
    assert got[(c.BOUNCER_AVG_WAIT.name, ("app",))] == pytest.approx(5969e-6)
    assert got[(c.BOUNCER_SENT_BYTES.name, ("app",))] == 230
    assert (c.BOUNCER_SERVER_ASSIGNMENTS.name, ("app",)) not in got  # 1.23+
    assert not [k for k in got if k[1] == ("pgbouncer",)]


def test_1_24_counters() -> None:
    got = parse("pgbouncer_1.24_limited.json")
    assert got[(c.BOUNCER_SERVER_ASSIGNMENTS.name, ("app",))] == 7  # 1.23+
    assert got[(c.BOUNCER_TRANSACTIONS.name, ("app",))] == 9
    assert got[(c.BOUNCER_TRANSACTION_SECONDS.name, ("app",))] == pytest.approx(1.085245)
    assert got[(c.BOUNCER_WAIT_SECONDS.name, ("app2",))] == pytest.approx(25733e-6)
    assert got[(c.BOUNCER_AVG_WAIT.name, ("app",))] == pytest.approx(75125e-6)
    assert not [k for k in got if k[1] == ("pgbouncer",)]


def test_numeric_text_cells() -> None:
    # psycopg hands SHOW STATS' numeric columns over as Decimal; text must parse too
    from decimal import Decimal
    rows = [{"database": "app", "total_xact_count": Decimal("12"), "total_wait_time": "2500000",
             "total_query_count": None}]
    got = values(PgbouncerStats().parse({SHOW_STATS: rows}, CTX))
    assert got == {(c.BOUNCER_TRANSACTIONS.name, ("app",)): 12,
                   (c.BOUNCER_WAIT_SECONDS.name, ("app",)): 2.5}

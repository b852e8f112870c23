"""pg_database: block counters per database and the hit ratio between two polls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter import catalogue as c
from exporter.collectors.pg_database import DATABASE_SQL, PgDatabase, hit_ratio
from exporter.model import Kind, PollContext, TargetId

DATA = json.loads((Path(__file__).parent.parent / "data" / "pg_rows.json").read_text())
ROWS = DATA["idle"]["primary"]["database"]
TARGET = TargetId("main", "primary", Kind.POSTGRES)


Values = dict[tuple[str, tuple[str, ...]], float]


def run(previous: Values) -> Values:
    ctx = PollContext(TARGET, now=0.0, previous=previous, previous_time=-1.0)
    out = PgDatabase().parse({DATABASE_SQL: ROWS}, ctx)
    return {(m.spec.name, m.labels): m.value for m in out}


def test_counters_for_every_database() -> None:
    m = run({})
    assert {labels[0] for name, labels in m if name == c.PG_BLOCKS_HIT.name} == {
        "postgres", "app", "template1", "template0"}
    assert m[(c.PG_BLOCKS_HIT.name, ("app",))] == ROWS[1]["blks_hit"]
    assert m[(c.PG_BLOCKS_READ.name, ("app",))] == ROWS[1]["blks_read"]
    assert not any(name == c.PG_CACHE_HIT_RATIO.name for name, _ in m)  # no previous poll


def test_ratio_between_two_polls() -> None:
    app = ROWS[1]
    previous = {(c.PG_BLOCKS_HIT.name, ("app",)): app["blks_hit"] - 90,
                (c.PG_BLOCKS_READ.name, ("app",)): app["blks_read"] - 10,
                # template0: nothing accessed since
                (c.PG_BLOCKS_HIT.name, ("template0",)): 0.0,
                (c.PG_BLOCKS_READ.name, ("template0",)): 0.0}
    m = run(previous)
    assert m[(c.PG_CACHE_HIT_RATIO.name, ("app",))] == pytest.approx(0.9)
    assert (c.PG_CACHE_HIT_RATIO.name, ("template0",)) not in m


def test_counter_going_backwards_gives_no_ratio() -> None:
    assert hit_ratio(10.0, 10.0, 500.0, 0.0) is None  # stats reset
    assert hit_ratio(10.0, 10.0, 0.0, 50.0) is None
    assert hit_ratio(10.0, 10.0, None, 0.0) is None
    assert hit_ratio(10.0, 10.0, 10.0, 10.0) is None
    assert hit_ratio(20.0, 10.0, 10.0, 10.0) == 1.0

"""pg_timeline: the timeline as a gauge; no row, NULL or nonsense gives no sample.

The query itself runs on real PostgreSQL 15-18 as the pg_monitor role in
tests/integration/test_patroni.py (15) and tests/integration/test_pg_versions.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from exporter import catalogue as c
from exporter.collectors.pg_timeline import TIMELINE_SQL, PgTimeline
from exporter.model import Kind, Metric, PollContext, TargetId

CTX = PollContext(TargetId("demo", "pg-1", Kind.POSTGRES), now=0.0)


def _parse(rows: list[dict[str, Any]]) -> list[Metric]:
    out = PgTimeline().parse({TIMELINE_SQL: rows}, CTX)
    assert all(isinstance(m, Metric) for m in out)
    return [m for m in out if isinstance(m, Metric)]


@pytest.mark.parametrize("value", [3, Decimal(3), 3.0])
def test_the_timeline_is_one_sample(value: object) -> None:
    (metric,) = _parse([{"timeline_id": value}])
    assert (metric.spec, metric.labels, metric.value) == (c.PG_TIMELINE_ID, (), 3.0)


def test_a_32_bit_timeline_fits() -> None:
    (metric,) = _parse([{"timeline_id": 0xFFFFFFFF}])
    assert metric.value == 4294967295.0


@pytest.mark.parametrize("rows", [[], [{"timeline_id": None}], [{"timeline_id": "x"}],
                                  [{"timeline_id": 0}], [{"timeline_id": True}]])
def test_no_timeline_no_sample(rows: list[dict[str, Any]]) -> None:
    assert _parse(rows) == []

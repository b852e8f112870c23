"""pg_activity: client backends by state and application, oldest transaction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from exporter import catalogue as c
from exporter.collectors.pg_activity import ACTIVITY_SQL, STATES, PgActivity
from exporter.model import Kind, PollContext, TargetId

DATA = json.loads((Path(__file__).parent.parent / "data" / "pg_rows.json").read_text())
CTX = PollContext(TargetId("main", "primary", Kind.POSTGRES), now=0.0)


def run(r: list[dict[str, Any]]) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(m.spec.name, m.labels): m.value for m in PgActivity().parse({ACTIVITY_SQL: r}, CTX)}


def test_every_state_is_exported_even_when_zero() -> None:
    m = run(DATA["idle"]["primary"]["activity"])
    assert {labels[0] for name, labels in m if name == c.PG_CONNECTIONS.name} == set(STATES)
    assert m[(c.PG_CONNECTIONS.name, ("active",))] == 1
    assert m[(c.PG_OLDEST_TRANSACTION.name, ())] == 0


def test_sessions_by_application_and_the_open_transaction() -> None:
    m = run(DATA["busy_activity"]["primary"])
    assert m[(c.PG_CONNECTIONS.name, ("idle in transaction",))] == 6
    assert m[(c.PG_APPLICATION_CONNECTIONS.name, ("billing",))] == 3
    assert m[(c.PG_APPLICATION_CONNECTIONS.name, ("web",))] == 2
    assert m[(c.PG_APPLICATION_CONNECTIONS.name, ("tierwatch",))] == 1
    assert 1.0 < m[(c.PG_OLDEST_TRANSACTION.name, ())] < 2.0


def app_row(name: str, n: int) -> dict[str, Any]:
    return {"by_state": False, "state": None, "application_name": name, "backends": float(n),
            "oldest_xact_seconds": None}


def test_twenty_largest_applications_and_the_rest_as_other() -> None:
    rows = [app_row(f"app{i:02d}", 100 - i) for i in range(25)]
    m = run(rows)
    apps = {labels[0]: v for (name, labels), v in m.items()
            if name == c.PG_APPLICATION_CONNECTIONS.name}
    assert len(apps) == 21
    assert apps["app00"] == 100 and "app20" not in apps
    assert apps["other"] == sum(100 - i for i in range(20, 25))


def test_backend_without_a_state_yet() -> None:
    rows = [{"by_state": True, "state": None, "application_name": None, "backends": 2.0,
             "oldest_xact_seconds": None}]
    assert run(rows)[(c.PG_CONNECTIONS.name, ("unknown",))] == 2

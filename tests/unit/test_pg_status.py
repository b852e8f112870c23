"""pg_status: role, max_connections, WAL position and the primary's position fact."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from exporter import catalogue as c
from exporter.collectors.pg_status import STATUS_SQL, PgStatus, role_of, version_text
from exporter.model import Kind, Metric, PollContext, Role, TargetId
from exporter.replication import ServerPosition

DATA = json.loads((Path(__file__).parent.parent / "data" / "pg_rows.json").read_text())
CTX = PollContext(TargetId("main", "x", Kind.POSTGRES), now=0.0)


def test_primary() -> None:
    rows = DATA["idle"]["primary"]["status"]
    out = PgStatus().parse({STATUS_SQL: rows}, CTX)
    metrics = {m.spec.name: m.value for m in out if isinstance(m, Metric)}
    facts = [f for f in out if isinstance(f, ServerPosition)]
    assert role_of(rows) is Role.PRIMARY
    assert metrics[c.PG_IN_RECOVERY.name] == 0
    assert metrics[c.PG_MAX_CONNECTIONS.name] == 50
    assert metrics[c.PG_WAL_POSITION.name] == rows[0]["current_wal_bytes"]
    assert facts == [ServerPosition(in_recovery=False,
                                    current_wal_lsn=rows[0]["current_wal_bytes"])]


def test_replica() -> None:
    rows = DATA["idle"]["replica"]["status"]
    out = PgStatus().parse({STATUS_SQL: rows}, CTX)
    metrics = {m.spec.name: m.value for m in out if isinstance(m, Metric)}
    assert role_of(rows) is Role.REPLICA
    assert metrics[c.PG_IN_RECOVERY.name] == 1
    assert metrics[c.PG_WAL_POSITION.name] == rows[0]["replay_wal_bytes"]
    facts = [f for f in out if isinstance(f, ServerPosition)]
    assert facts == [ServerPosition(in_recovery=True)]  # only a primary dates the cluster


def test_server_version_label() -> None:
    rows = DATA["idle"]["primary"]["status"]
    out = PgStatus().parse({STATUS_SQL: rows}, replace(CTX, server_version=150014))
    info = [m for m in out if isinstance(m, Metric) and m.spec is c.PG_SERVER_INFO]
    assert [(m.labels, m.value) for m in info] == [(("15.14",), 1.0)]
    # no version known (0): no series rather than a made-up one
    assert not [m for m in PgStatus().parse({STATUS_SQL: rows}, CTX)
                if isinstance(m, Metric) and m.spec is c.PG_SERVER_INFO]


def test_version_text() -> None:
    assert version_text(180006) == "18.6"
    assert version_text(100023) == "10.23"
    assert version_text(90624) == "9.6.24"

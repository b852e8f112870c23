"""pg_slots: retention, activity, wal_status and safe_wal_size of replication slots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from exporter import catalogue as c
from exporter.collectors.pg_slots import SLOTS_SQL, SLOTS_SQL_PRE13, PgSlots
from exporter.model import Kind, PollContext, Role, TargetId

DATA = json.loads((Path(__file__).parent.parent / "data" / "pg_rows.json").read_text())
CTX = PollContext(TargetId("main", "primary", Kind.POSTGRES), now=0.0,
                  server_version=150018,
                  role=Role.PRIMARY)
SLOT = ("replica_1", "physical")


def run(r: list[dict[str, Any]]) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(m.spec.name, m.labels): m.value for m in PgSlots().parse({SLOTS_SQL: r}, CTX)}


def test_active_slot() -> None:
    m = run(DATA["idle"]["primary"]["slots"])
    assert m[(c.PG_SLOT_ACTIVE.name, SLOT)] == 1
    assert m[(c.PG_SLOT_RETAINED_BYTES.name, SLOT)] == 0
    assert m[(c.PG_SLOT_WAL_STATUS.name, (*SLOT, "reserved"))] == 1
    assert m[(c.PG_SLOT_WAL_STATUS.name, (*SLOT, "lost"))] == 0
    assert (c.PG_SLOT_SAFE_WAL_SIZE.name, SLOT) not in m  # max_slot_wal_keep_size = -1


def test_slot_of_a_stopped_replica_is_inactive_and_retains_wal() -> None:
    m = run(DATA["replica_stopped"]["primary"]["slots"])
    assert m[(c.PG_SLOT_ACTIVE.name, SLOT)] == 0
    assert m[(c.PG_SLOT_RETAINED_BYTES.name, SLOT)] > 100_000


def test_limited_and_lost_slots() -> None:
    limited = {**DATA["idle"]["primary"]["slots"][0], "safe_wal_size": 1048576.0,
               "wal_status": "extended"}
    lost = {**limited, "slot_name": "cdc", "slot_type": "logical", "wal_status": "lost",
            "retained_bytes": None, "safe_wal_size": -5.0, "active": False}
    m = run([limited, lost])
    assert m[(c.PG_SLOT_SAFE_WAL_SIZE.name, SLOT)] == 1048576.0
    assert m[(c.PG_SLOT_WAL_STATUS.name, (*SLOT, "extended"))] == 1
    assert m[(c.PG_SLOT_WAL_STATUS.name, ("cdc", "logical", "lost"))] == 1
    assert (c.PG_SLOT_RETAINED_BYTES.name, ("cdc", "logical")) not in m


def test_unknown_wal_status_is_still_shown() -> None:
    row = {**DATA["idle"]["primary"]["slots"][0], "wal_status": "conflicting"}
    m = run([row])
    assert m[(c.PG_SLOT_WAL_STATUS.name, (*SLOT, "conflicting"))] == 1


def test_servers_before_13_get_a_query_without_wal_status() -> None:
    old = PollContext(CTX.target, now=0.0, server_version=120017, role=Role.PRIMARY)
    assert PgSlots().queries(old) == (SLOTS_SQL_PRE13,)
    assert "wal_status AS" not in SLOTS_SQL_PRE13.replace("NULL::text AS wal_status", "")
    for version in (130000, 150018, 170002):
        new = PollContext(CTX.target, now=0.0, server_version=version, role=Role.PRIMARY)
        assert PgSlots().queries(new) == (SLOTS_SQL,)
    row = {**DATA["idle"]["primary"]["slots"][0], "wal_status": None, "safe_wal_size": None}
    out = PgSlots().parse({SLOTS_SQL_PRE13: [row]}, old)
    assert {m.spec.name for m in out} == {c.PG_SLOT_ACTIVE.name, c.PG_SLOT_RETAINED_BYTES.name}

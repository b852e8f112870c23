"""pg_replication: per-replica byte and time lag per stage, and who the replica is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from exporter import catalogue as c
from exporter.collectors.pg_replication import REPLICATION_SQL, PgReplication, replica_names
from exporter.model import Kind, PollContext, Role, TargetId
from exporter.replication import ReceiverIdentity, ReplicationView

DATA = json.loads((Path(__file__).parent.parent / "data" / "pg_rows.json").read_text())


def rows(state: str) -> list[dict[str, Any]]:
    return [dict(r) for r in DATA[state]["primary"]["replication"]]


def ctx(facts: dict[str, dict[str, Any]] | None = None) -> PollContext:
    receivers = {
        target: ReceiverIdentity(f.get("wal_receiver_slot"), f.get("wal_receiver_application_name"))
        for target, f in (facts or {}).items()
    }
    cluster = ReplicationView("main", primary_target="primary", receivers=receivers)
    return PollContext(TargetId("main", "primary", Kind.POSTGRES), now=0.0,
                       server_version=150018, role=Role.PRIMARY, replication=cluster)


def run(r: list[dict[str, Any]], context: PollContext) -> dict[tuple[str, tuple[str, ...]], float]:
    out = PgReplication().parse({REPLICATION_SQL: r}, context)
    return {(m.spec.name, m.labels): m.value for m in out}


def test_idle_caught_up_replica_reads_zero_seconds_although_the_columns_are_null() -> None:
    r = rows("idle")
    assert r[0]["replay_lag_seconds"] is None  # what PostgreSQL shows on an idle primary
    m = run(r, ctx())
    assert m[(c.PG_REPLICAS_STREAMING.name, ())] == 1
    for stage in ("sent", "write", "flush", "replay"):
        assert m[(c.PG_REPLICATION_LAG_BYTES.name, ("replica-1", stage))] == 0
    for stage in ("write", "flush", "replay"):
        assert m[(c.PG_REPLICATION_LAG_SECONDS.name, ("replica-1", stage))] == 0
    assert (c.PG_REPLICATION_LAG_SECONDS.name, ("replica-1", "sent")) not in m


def test_paused_replay_lags_only_at_the_replay_stage() -> None:
    r = rows("paused")
    m = run(r, ctx())
    assert r[0]["replay_lag_bytes"] > 0 and r[0]["write_lag_bytes"] == 0
    assert r[0]["write_lag_seconds"] is not None
    assert m[(c.PG_REPLICATION_LAG_BYTES.name, ("replica-1", "replay"))] == \
        r[0]["replay_lag_bytes"]
    assert m[(c.PG_REPLICATION_LAG_SECONDS.name, ("replica-1", "replay"))] == \
        r[0]["replay_lag_seconds"]
    # bytes 0 at write: 0 s, not the sub-millisecond last measurement
    assert m[(c.PG_REPLICATION_LAG_SECONDS.name, ("replica-1", "write"))] == 0


def test_bytes_behind_without_a_measurement_leaves_seconds_out() -> None:
    r = rows("paused")
    r[0]["replay_lag_seconds"] = None
    m = run(r, ctx())
    assert (c.PG_REPLICATION_LAG_SECONDS.name, ("replica-1", "replay")) not in m
    assert m[(c.PG_REPLICATION_LAG_BYTES.name, ("replica-1", "replay"))] == \
        r[0]["replay_lag_bytes"]


def test_walsender_in_startup_has_no_lag_series() -> None:
    r = rows("idle")
    r[0].update(state="startup", sent_lag_bytes=None, write_lag_bytes=None,
                flush_lag_bytes=None, replay_lag_bytes=None)
    m = run(r, ctx())
    assert m == {(c.PG_REPLICAS_STREAMING.name, ()): 0}


def test_no_replica_connected() -> None:
    assert run(rows("replica_stopped"), ctx()) == {(c.PG_REPLICAS_STREAMING.name, ()): 0}


def test_replica_is_named_after_the_configured_target_using_its_slot() -> None:
    r = rows("idle")
    r[0]["application_name"] = "walreceiver"  # the default nobody changes
    facts = {"east": {"wal_receiver_slot": "replica_1",
                      "wal_receiver_application_name": "walreceiver"},
             "west": {"wal_receiver_slot": "replica_2",
                      "wal_receiver_application_name": "walreceiver"}}
    assert replica_names(r, ctx(facts)) == ["east"]


def test_replica_is_named_by_application_name_when_no_slot_matches() -> None:
    r = rows("idle")
    r[0]["slot_name"] = None
    facts = {"db-2": {"wal_receiver_application_name": "replica-1"}}
    assert replica_names(r, ctx(facts)) == ["db-2"]


def test_ambiguous_application_name_is_kept_as_is() -> None:
    r = rows("idle")
    r[0].update(slot_name=None, application_name="walreceiver")
    facts = {"a": {"wal_receiver_application_name": "walreceiver"},
             "b": {"wal_receiver_application_name": "walreceiver"}}
    assert replica_names(r, ctx(facts)) == ["walreceiver"]


def test_colliding_names_never_duplicate_a_series() -> None:
    r = rows("idle") * 2
    r[0] = {**r[0], "pid": 11, "state": "catchup"}
    r[1] = {**r[1], "pid": 12}
    assert replica_names(r, ctx()) == ["replica-1#11", "replica-1"]
    m = run(r, ctx())
    assert (c.PG_REPLICATION_LAG_BYTES.name, ("replica-1#11", "replay")) in m

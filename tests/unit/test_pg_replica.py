"""pg_replica: the replica's own view and lag dated by the primary's WAL history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter import catalogue as c
from exporter.collectors.pg_replica import REPLICA_SQL, PgReplica, conninfo_value
from exporter.model import Kind, Metric, PollContext, Role, TargetId
from exporter.replication import ReceiverIdentity, ReplicationView, WalPoint

DATA = json.loads((Path(__file__).parent.parent / "data" / "pg_rows.json").read_text())
NOW = 1000.0


def row(state: str, **changes: Any) -> dict[str, Any]:
    return {**DATA[state]["replica"]["replica"][0], **changes}


def ctx(history: tuple[WalPoint, ...] = (), primary: str | None = "primary",
        interval: float | None = 1.0, target: str = "replica-1") -> PollContext:
    cluster = ReplicationView("main", primary_wal=history, primary_target=primary,
                              primary_interval=interval)
    return PollContext(TargetId("main", target, Kind.POSTGRES), now=NOW, server_version=150018,
                       role=Role.REPLICA, previous_time=NOW - 1.0, replication=cluster)


def run(r: dict[str, Any], context: PollContext) -> tuple[dict[str, float], dict[str, Any]]:
    out = PgReplica().parse({REPLICA_SQL: [r]}, context)
    metrics = {m.spec.name: m.value for m in out if isinstance(m, Metric)}
    facts: dict[str, Any] = {}
    for item in out:
        if isinstance(item, ReceiverIdentity):
            facts.update({k: v for k, v in (("wal_receiver_slot", item.slot),
                                            ("wal_receiver_application_name",
                                             item.application_name)) if v})
    return metrics, facts


def test_idle_replica_caught_up_with_the_primary_reads_zero() -> None:
    r = row("idle")
    replay = r["replay_lsn"]
    # the primary sat at this position for ten minutes
    history = (WalPoint(NOW - 600, replay), WalPoint(NOW - 0.5, replay))
    metrics, facts = run(r, ctx(history))
    assert metrics[c.PG_REPLICA_LAG_SECONDS.name] == 0.0
    assert metrics[c.PG_REPLICA_LAG_BYTES.name] == 0.0
    assert metrics[c.PG_REPLICA_LAG_FROM_PRIMARY.name] == 1.0
    assert metrics[c.PG_WAL_RECEIVER_UP.name] == 1.0
    assert metrics[c.PG_REPLAY_PAUSED.name] == 0.0
    assert facts == {"wal_receiver_slot": "replica_1",
                     "wal_receiver_application_name": "replica-1"}


def test_paused_replay_is_dated_by_when_the_primary_passed_it() -> None:
    r = row("paused")  # paused: received 53029696, replayed 52767616
    replay = r["replay_lsn"]
    # the primary was at the replay position 7 s ago and has written steadily since
    history = (WalPoint(NOW - 8, replay - 1000), WalPoint(NOW - 7, replay),
               WalPoint(NOW - 1, replay + 600_000))
    metrics, _ = run(r, ctx(history))
    assert metrics[c.PG_REPLICA_LAG_SECONDS.name] == pytest.approx(7.0)
    # the primary's last known position, not the (smaller) receive position
    assert metrics[c.PG_REPLICA_LAG_BYTES.name] == 600_000
    assert metrics[c.PG_REPLAY_PAUSED.name] == 1.0


def test_receive_beyond_the_primarys_last_poll_counts_for_byte_lag() -> None:
    r = row("paused")
    history = (WalPoint(NOW - 8, r["replay_lsn"] - 10), WalPoint(NOW - 1, r["replay_lsn"] + 10))
    metrics, _ = run(r, ctx(history))
    assert metrics[c.PG_REPLICA_LAG_BYTES.name] == r["receive_lsn"] - r["replay_lsn"]


def test_broken_link_received_equals_replayed_still_shows_lag() -> None:
    # walreceiver frozen: it reports streaming, and everything received is replayed
    r = row("idle", receive_lsn=5000.0, replay_lsn=5000.0)
    history = (WalPoint(NOW - 12, 5000.0), WalPoint(NOW - 10, 9000.0), WalPoint(NOW - 1, 90000.0))
    metrics, _ = run(r, ctx(history))
    assert metrics[c.PG_REPLICA_LAG_SECONDS.name] == pytest.approx(12.0)
    assert metrics[c.PG_REPLICA_LAG_BYTES.name] == 85000.0


# --- fallback: the replica's own view -----------------------------------------------------

def test_no_primary_history_falls_back_to_the_replay_timestamp_when_behind() -> None:
    r = row("paused")
    metrics, _ = run(r, ctx(()))
    assert metrics[c.PG_REPLICA_LAG_FROM_PRIMARY.name] == 0.0
    assert metrics[c.PG_REPLICA_LAG_SECONDS.name] == pytest.approx(r["replay_timestamp_age"])
    assert metrics[c.PG_REPLICA_LAG_BYTES.name] == r["receive_lsn"] - r["replay_lsn"]


def test_fallback_all_replayed_and_streaming_is_zero() -> None:
    metrics, _ = run(row("idle", replay_timestamp_age=3600.0), ctx(()))
    assert metrics[c.PG_REPLICA_LAG_SECONDS.name] == 0.0
    assert metrics[c.PG_REPLICA_LAG_BYTES.name] == 0.0


def test_fallback_receiver_down_uses_the_replay_timestamp() -> None:
    r = row("idle", receiver_status=None, replay_timestamp_age=42.0)
    metrics, _ = run(r, ctx(()))
    assert metrics[c.PG_WAL_RECEIVER_UP.name] == 0.0
    assert metrics[c.PG_REPLICA_LAG_SECONDS.name] == 42.0


def test_fallback_without_any_replayed_commit_leaves_seconds_out() -> None:
    r = row("idle", receiver_status=None, replay_timestamp_age=None, receive_lsn=None)
    metrics, _ = run(r, ctx(()))
    assert c.PG_REPLICA_LAG_SECONDS.name not in metrics
    assert c.PG_REPLICA_LAG_BYTES.name not in metrics


def test_stale_primary_history_is_not_trusted() -> None:
    r = row("paused")
    history = (WalPoint(NOW - 30, r["replay_lsn"]), WalPoint(NOW - 20, r["replay_lsn"] + 1e6))
    metrics, _ = run(r, ctx(history, interval=1.0))
    assert metrics[c.PG_REPLICA_LAG_FROM_PRIMARY.name] == 0.0
    assert metrics[c.PG_REPLICA_LAG_SECONDS.name] == pytest.approx(r["replay_timestamp_age"])
    # with a 15 s primary interval the same points are still fresh
    metrics, _ = run(r, ctx(history, interval=15.0))
    assert metrics[c.PG_REPLICA_LAG_FROM_PRIMARY.name] == 1.0


def test_own_history_is_never_used() -> None:
    r = row("paused")
    history = (WalPoint(NOW - 8, r["replay_lsn"]), WalPoint(NOW - 1, r["replay_lsn"] + 1e6))
    metrics, _ = run(r, ctx(history, primary="replica-1"))
    assert metrics[c.PG_REPLICA_LAG_FROM_PRIMARY.name] == 0.0


def test_promoted_between_queries_reports_nothing() -> None:
    metrics, facts = run(row("idle", in_recovery=False), ctx(()))
    assert metrics == {} and facts == {}


def test_on_a_primary_the_query_row_is_harmless() -> None:
    primary_row = DATA["idle"]["primary"]["replica"][0]
    assert primary_row["in_recovery"] is False and primary_row["replay_paused"] is None


# --- identity facts -----------------------------------------------------------------------

def test_application_name_falls_back_to_cluster_name() -> None:
    r = row("idle", receiver_conninfo=None, receiver_slot=None, cluster_name="east-2")
    _, facts = run(r, ctx(()))
    assert facts["wal_receiver_application_name"] == "east-2"
    assert facts["wal_receiver_slot"] == "replica_1"  # from primary_slot_name


@pytest.mark.parametrize(("conninfo", "expected"), [
    ("host=a application_name=replica-1 port=5", "replica-1"),
    ("host=a application_name = 'my replica' port=5", "my replica"),
    (r"application_name='it\'s' host=a", "it's"),
    ("host=a port=5", None),
    ("postgresql://a/b?application_name=x", "x"),
    ("host=a application_name='unterminated", None),
])
def test_conninfo_value(conninfo: str, expected: str | None) -> None:
    assert conninfo_value(conninfo, "application_name") == expected

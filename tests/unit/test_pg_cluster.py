"""ClusterState's WAL history and replay_delay: the arithmetic behind replica lag seconds."""

from __future__ import annotations

from collections import deque

import pytest

from exporter.clusterstate import WAL_HISTORY_SECONDS, ClusterState, add_point
from exporter.model import Kind, TargetId
from exporter.replication import (
    Observation,
    ReceivedPosition,
    ReceiverIdentity,
    ServerPosition,
    WalPoint,
    replay_delay,
)
from exporter.snapshot import TargetSnapshot


def snap(target: str, at: float, *observed: Observation, up: bool = True) -> TargetSnapshot:
    return TargetSnapshot(
        target=TargetId("main", target, Kind.POSTGRES), up=up, polled_at=at, metrics=(),
        daemon_metrics=(), observed=observed,
    )


def primary_at(lsn: float) -> ServerPosition:
    return ServerPosition(in_recovery=False, current_wal_lsn=lsn)


# --- replay_delay -------------------------------------------------------------------------

def test_no_history_is_unknown() -> None:
    assert replay_delay((), 100.0, 10.0) is None


def test_caught_up_with_the_latest_point_is_zero_however_old_it_is() -> None:
    # an idle primary: one position for ten minutes
    history = (WalPoint(0.0, 500.0), WalPoint(600.0, 500.0))
    assert replay_delay(history, 500.0, 600.5) == 0.0
    assert replay_delay(history, 700.0, 600.5) == 0.0  # primary wrote since its last poll


def test_stalled_replay_is_dated_by_interpolation() -> None:
    # the primary writes 100 bytes/s; replay stopped at 250 (written at t = 2.5)
    history = tuple(WalPoint(float(t), 100.0 * t) for t in range(21))
    assert replay_delay(history, 250.0, 20.0) == pytest.approx(17.5)
    assert replay_delay(history, 300.0, 20.0) == pytest.approx(17.0)  # exactly on a point


def test_first_write_after_an_idle_run_is_dated_to_the_middle_of_its_gap() -> None:
    # idle at 500 from t=0 to t=60 (kept as first and last point), then writes
    history = (WalPoint(0.0, 500.0), WalPoint(60.0, 500.0), WalPoint(61.0, 900.0))
    # the replica has all of the idle run but nothing after it: stale since the first
    # write, which came between t=60 and t=61 — the middle, so never off by more than 0.5
    assert replay_delay(history, 500.0, 65.0) == pytest.approx(4.5)


def test_a_position_inside_a_stretch_of_writing_is_interpolated() -> None:
    history = (WalPoint(60.0, 500.0), WalPoint(61.0, 900.0))
    assert replay_delay(history, 600.0, 65.0) == pytest.approx(65.0 - 60.25)


def test_older_than_the_history_is_at_least_as_old_as_its_first_point() -> None:
    history = (WalPoint(100.0, 1000.0), WalPoint(101.0, 2000.0))
    assert replay_delay(history, 10.0, 130.0) == pytest.approx(30.0)


def test_never_negative() -> None:
    history = (WalPoint(10.0, 0.0), WalPoint(11.0, 100.0))
    assert replay_delay(history, 50.0, 5.0) == 0.0


# --- add_point ----------------------------------------------------------------------------

def test_runs_of_equal_positions_keep_first_and_last_point() -> None:
    history: deque[WalPoint] = deque()
    for t in range(10):
        add_point(history, WalPoint(float(t), 500.0))
    add_point(history, WalPoint(10.0, 600.0))
    assert list(history) == [WalPoint(0.0, 500.0), WalPoint(9.0, 500.0), WalPoint(10.0, 600.0)]


def test_wal_going_backwards_starts_a_new_history() -> None:
    history = deque([WalPoint(0.0, 500.0), WalPoint(1.0, 600.0)])
    add_point(history, WalPoint(2.0, 100.0))
    assert list(history) == [WalPoint(2.0, 100.0)]


def test_points_older_than_the_horizon_are_dropped() -> None:
    history: deque[WalPoint] = deque()
    for t in range(5):
        add_point(history, WalPoint(t * 1000.0, t * 10.0))
    assert history[0].time >= 4000.0 - WAL_HISTORY_SECONDS - 1000.0
    assert history[-1] == WalPoint(4000.0, 40.0)


# --- ClusterState ---------------------------------------------------------------------------

def test_view_carries_the_primary_history_and_interval() -> None:
    state = ClusterState("main")
    state.record(snap("primary", 10.0, primary_at(100.0)))
    state.record(snap("replica-1", 10.2, ReceiverIdentity(slot="replica_1")))
    state.record(snap("primary", 11.0, primary_at(200.0)))
    view = state.view()
    assert view.primary_target == "primary"
    assert view.primary_wal == (WalPoint(10.0, 100.0), WalPoint(11.0, 200.0))
    assert view.primary_interval == pytest.approx(1.0)
    assert view.receivers["replica-1"].slot == "replica_1"


def test_failed_primary_poll_hides_its_position_until_it_is_back() -> None:
    state = ClusterState("main")
    state.record(snap("primary", 10.0, primary_at(100.0)))
    state.record(snap("primary", 11.0, up=False))
    assert state.view().primary_wal == ()
    assert state.view().primary_target == "primary"
    state.record(snap("primary", 12.0, primary_at(150.0)))
    assert state.view().primary_wal[-1] == WalPoint(12.0, 150.0)


def test_failover_starts_the_new_primary_with_a_fresh_history() -> None:
    state = ClusterState("main")
    state.record(snap("primary", 10.0, primary_at(100.0)))
    state.record(snap("primary", 11.0, up=False))
    state.record(snap("replica-1", 11.5, primary_at(120.0)))  # promoted
    view = state.view()
    assert view.primary_target == "replica-1"
    assert view.primary_wal == (WalPoint(11.5, 120.0),)


def test_a_primary_that_comes_back_in_recovery_is_no_longer_the_primary() -> None:
    state = ClusterState("main")
    state.record(snap("primary", 10.0, primary_at(100.0)))
    state.record(snap("primary", 11.0))  # no position but no role either: a collector bug
    assert state.view().primary_target == "primary"
    state.record(snap("primary", 12.0, ServerPosition(in_recovery=True)))  # a replica now
    assert state.view().primary_target is None
    assert state.view().primary_wal == ()


def test_forget_drops_a_removed_target() -> None:
    state = ClusterState("main")
    state.record(snap("primary", 10.0, primary_at(100.0)))
    state.forget("primary")
    assert state.view().primary_target is None and not state.view().primary_wal


def test_a_replica_that_stops_reporting_its_receiver_loses_its_identity() -> None:
    # identities are typed and replaced whole: a receiver that went away is not remembered
    state = ClusterState("main")
    state.record(snap("replica-1", 1.0, ReceiverIdentity(slot="s1", application_name="r1")))
    assert state.view().receivers == {"replica-1": ReceiverIdentity("s1", "r1")}
    state.record(snap("replica-1", 2.0, ServerPosition(in_recovery=True)))
    assert state.view().receivers == {}


def replica_at(lsn: float) -> ReceivedPosition:
    return ReceivedPosition(lsn)


def test_replica_receive_positions_are_points_between_primary_polls() -> None:
    state = ClusterState("main")
    state.record(snap("primary", 10.0, primary_at(100.0)))
    state.record(snap("replica-1", 10.5, replica_at(180.0)))
    state.record(snap("primary", 11.0, primary_at(250.0)))
    assert state.view().primary_wal == (WalPoint(10.0, 100.0), WalPoint(10.5, 180.0),
                                        WalPoint(11.0, 250.0))


def test_a_receive_position_behind_the_history_adds_nothing() -> None:
    state = ClusterState("main")
    state.record(snap("primary", 10.0, primary_at(100.0)))
    state.record(snap("replica-1", 10.5, replica_at(90.0)))  # a slow receiver
    assert state.view().primary_wal == (WalPoint(10.0, 100.0),)


def test_a_primary_poll_that_ends_after_a_replica_poll_goes_before_it() -> None:
    state = ClusterState("main")
    state.record(snap("primary", 10.0, primary_at(100.0)))
    state.record(snap("replica-1", 11.2, replica_at(300.0)))  # ended first
    state.record(snap("primary", 11.0, primary_at(250.0)))  # started earlier, ended later
    assert state.view().primary_wal == (WalPoint(10.0, 100.0), WalPoint(11.0, 250.0),
                                        WalPoint(11.2, 300.0))


def test_receive_positions_need_a_primary_whose_position_is_current() -> None:
    state = ClusterState("main")
    state.record(snap("replica-1", 10.5, replica_at(180.0)))  # no primary yet
    assert state.view().primary_wal == ()
    state.record(snap("primary", 11.0, primary_at(200.0)))
    state.record(snap("primary", 12.0, up=False))
    state.record(snap("replica-1", 12.5, replica_at(400.0)))
    state.record(snap("primary", 13.0, primary_at(450.0)))
    assert WalPoint(12.5, 400.0) not in state.view().primary_wal

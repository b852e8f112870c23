"""Phase groups: a cluster's PostgreSQL members are polled spread over their interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exporter.scheduler import _Group, first_run

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_members_take_the_middle_of_the_widest_gap() -> None:
    group = _Group(T0, 1.0)
    assert [group.place(name) for name in ("a", "b", "c", "d")] == [0.0, 0.5, 0.25, 0.75]


def test_a_member_that_left_frees_its_phase() -> None:
    group = _Group(T0, 1.0)
    for name in ("a", "b", "c"):
        group.place(name)
    group.phases.pop("b")  # what PollScheduler.remove does
    assert group.place("e") == pytest.approx(0.625)  # middle of the gap 0.25 .. 1.0


def test_first_run_is_the_next_time_at_the_phase() -> None:
    now = T0 + timedelta(seconds=10.3)
    assert first_run(T0, 0.5, 1.0, now) == T0 + timedelta(seconds=10.5)
    assert first_run(T0, 0.25, 1.0, now) == T0 + timedelta(seconds=11.25)
    assert first_run(T0, 0.3, 1.0, now) == T0 + timedelta(seconds=11.3)  # after, not at


def test_first_run_never_waits_for_an_anchor_still_to_come() -> None:
    """A new group's anchor is drawn up to an interval ahead; a member's first phased poll
    still comes within one interval (so a healthy replica is never polled 2 s apart)."""
    now = T0 + timedelta(seconds=10.3)
    assert first_run(T0 + timedelta(seconds=20), 0.0, 1.0, now) == T0 + timedelta(seconds=11)
    for phase in (0.0, 0.25, 0.5, 0.99):
        for ahead in (0.01, 0.4, 0.99, 5.0):
            at = first_run(now + timedelta(seconds=ahead), phase, 1.0, now)
            assert now < at <= now + timedelta(seconds=1.0), (phase, ahead, at)

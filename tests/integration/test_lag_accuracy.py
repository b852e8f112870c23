"""Replica lag against the truth, right after an idle spell: a replica caught up with an idle
primary stalls, then the primary starts writing; every replica poll's lag must be within
±0.35 s of how stale its data really is (now minus the first commit it lacks), at a 1 s poll.

The hard case for dating by the primary's WAL samples: the first write after idleness falls
anywhere between two samples. Spread polls (scheduler phase groups) and the replicas'
receive positions narrow the gap; this test runs the stall at several phases of the poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
import yaml

from tests.support import DaemonProcess, wait_until
from tests.topology import Topology

POLL = 1.0
TOLERANCE = 0.35


class Writer:
    """Commits a row every 20 ms on the primary; remembers when its first commit returned,
    and where the primary's WAL stood just before it."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._stop = threading.Event()
        self.first_commit: float | None = None
        self.wal_before: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        wait_until(lambda: self.first_commit is not None, 5, "the writer's first commit")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            self.wal_before = row[0] if row else None
            while not self._stop.is_set():
                before = time.time()
                conn.execute("INSERT INTO lag_probe VALUES (clock_timestamp())")
                if self.first_commit is None:
                    # the row's WAL was written between these two instants: the midpoint
                    self.first_commit = (before + time.time()) / 2
                self._stop.wait(0.02)


@pytest.fixture
def lag_daemon(topology: Topology,
               daemon_factory: Callable[..., DaemonProcess]) -> Iterator[DaemonProcess]:
    topology.psql(topology.primary, "CREATE TABLE IF NOT EXISTS lag_probe (at timestamptz)")
    pw = topology.write_password_files()
    daemon = daemon_factory(yaml.safe_dump({"poll_interval": POLL, "clusters": [{
        "name": "main", "postgres": [
            {"name": s.name, "dsn": topology.monitor_dsn(s), "password_file": str(pw["postgres"])}
            for s in (topology.primary, topology.replica)]}]}))
    yield daemon
    topology.psql(topology.replica, "SELECT pg_wal_replay_resume()")


def _replica_polls(daemon: DaemonProcess, seconds: float) -> list[tuple[float, float]]:
    """(poll time, lag) of every replica poll seen in the next `seconds`."""
    seen: dict[float, float] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        scrape = daemon.scrape()
        at = scrape.value("tierwatch_last_poll_success_timestamp_seconds", target="replica-1")
        lag = scrape.value("tierwatch_pg_replica_lag_seconds", target="replica-1")
        if at is not None and lag is not None:
            seen[at] = lag
        time.sleep(0.05)
    return sorted(seen.items())


def _stall(topology: Topology, daemon: DaemonProcess,
           offset: float) -> tuple[Writer | None, list[tuple[float, float]]]:
    """Pause replay, write, and collect the replica's polls. The truth is the writer's first
    commit only if it was the first WAL past the paused replica's position: a record the
    server writes of its own (a checkpoint, a standby snapshot) in between makes the replica
    stale from that record on, correctly reported and no use here (writer None, retry)."""
    topology.psql(topology.replica, "SELECT pg_wal_replay_pause()")
    wait_until(lambda: topology.psql(topology.replica,
                                     "SELECT pg_get_wal_replay_pause_state()") == "paused",
               5, "replay paused")
    time.sleep(offset)  # the first write lands at another phase of the polls each time
    with Writer(topology.superuser_dsn(topology.primary)) as writer:
        polls = _replica_polls(daemon, 3.5)
    clean = topology.psql(topology.replica, "SELECT pg_last_wal_replay_lsn() >= "
                                            f"'{writer.wal_before}'::pg_lsn")
    topology.psql(topology.replica, "SELECT pg_wal_replay_resume()")
    return (writer if clean == "t" else None), polls


@pytest.mark.parametrize("offset", [0.1, 0.35, 0.6, 0.85])
def test_lag_after_an_idle_spell_is_within_the_tolerance(
    topology: Topology, lag_daemon: DaemonProcess, offset: float,
) -> None:
    daemon = lag_daemon

    def caught_up_and_idle() -> bool:
        return daemon.scrape().value("tierwatch_pg_replica_lag_seconds",
                                     target="replica-1") == 0.0

    for _attempt in range(3):
        wait_until(caught_up_and_idle, 20, "replica caught up")
        time.sleep(2.5 * POLL)  # an idle spell: the primary's samples sit at one position
        writer, polls = _stall(topology, daemon, offset)
        if writer is not None:
            break
    else:
        pytest.fail("the primary wrote WAL of its own before the writer, three times")
    assert writer.first_commit is not None
    # a poll's timestamp is taken as it ends, a few ms after the lag was judged
    judged = [(at, lag, max(0.0, at - writer.first_commit)) for at, lag in polls
              if at > writer.first_commit + 0.1]
    assert len(judged) >= 3, polls
    errors = [round(lag - truth, 3) for _, lag, truth in judged]
    assert all(abs(e) <= TOLERANCE for e in errors), (errors, judged)
    print(f"\noffset {offset}: lag errors {errors}")

"""Replication against a real primary and streaming replica: lag that tells the truth.

The daemon runs as a child process polling every second, connected as the pg_monitor-only
role `monitor`. Writes on the primary come from a thread inserting into app.items every
100 ms as superuser. The 90 s idle-primary test watches a private topology from a
background thread that starts with this module, so the other scenarios (which write, pause,
freeze and stop the shared topology's replica) run meanwhile and the file takes ~2 min.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import yaml

from exporter import catalogue as c
from tests.support import DaemonProcess, Scrape, wait_until
from tests.topology import SLOT_NAME, Topology

pytestmark = pytest.mark.integration

INTERVAL = 1.0
PRIMARY = {"cluster": "main", "target": "primary"}
REPLICA = {"cluster": "main", "target": "replica-1"}
IDLE_SECONDS = 90.0
STALL_SECONDS = 20.0


# --------------------------------------------------------------------------- helpers


class Writer:
    """Inserts a few rows into app.items every 100 ms until the block ends."""

    def __init__(self, topo: Topology) -> None:
        self.dsn = topo.superuser_dsn(topo.primary, "app")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self.rows = 0
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self._stop.is_set():
                    conn.execute("INSERT INTO items(payload) "
                                 "SELECT repeat('w', 200) FROM generate_series(1, 20)")
                    self.rows += 20
                    time.sleep(0.1)
        except BaseException as exc:  # reported by __exit__
            self.error = exc

    def __enter__(self) -> Writer:
        self._thread.start()
        wait_until(lambda: self.rows or self.error, 5, "first write on the primary")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        if self.error is not None:
            raise AssertionError(f"writer failed: {self.error!r}")


def query(dsn: str, sql: str, *args: Any) -> Any:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(sql, args or None).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def replica_lag(scrape: Scrape) -> float | None:
    return scrape.value(c.PG_REPLICA_LAG_SECONDS.name, **REPLICA)


def from_primary(daemon: DaemonProcess) -> bool:
    return daemon.scrape().value(c.PG_REPLICA_LAG_FROM_PRIMARY.name, **REPLICA) == 1


def start_daemon(topo: Topology, **kwargs: Any) -> DaemonProcess:
    daemon = DaemonProcess(topo.tierwatch_config(poll_interval=INTERVAL), **kwargs).start()
    # the replica measures against the primary once the primary has been polled twice
    wait_until(lambda: from_primary(daemon), 15, "replica lag measured against the primary")
    return daemon


def caught_up(daemon: DaemonProcess) -> bool:
    s = daemon.scrape()
    return (replica_lag(s) == 0
            and s.value(c.PG_REPLICATION_LAG_BYTES.name, replica="replica-1", stage="replay",
                        **PRIMARY) == 0)


def assert_clean_log(daemon: DaemonProcess) -> None:
    log = daemon.log_text()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def daemon(topology: Topology) -> Iterator[DaemonProcess]:
    d = start_daemon(topology)
    try:
        yield d
    finally:
        d.stop()
    assert_clean_log(d)


# --------------------------------------------------------------------------- idle watch


@dataclass
class IdleWatch:
    """Samples a daemon watching an idle private topology; runs in its own thread."""

    samples: list[dict[str, float | None]] = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    lsn_moved: int = 0

    def run(self) -> None:
        try:
            with Topology() as topo:
                daemon = start_daemon(topo)
                try:
                    self._watch(topo, daemon)
                finally:
                    daemon.stop()
                assert_clean_log(daemon)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def _watch(self, topo: Topology, daemon: DaemonProcess) -> None:
        # setup wrote WAL (roles, a database, a table): let the replica settle first
        wait_until(lambda: caught_up(daemon), 15, "replica caught up before the idle window")
        primary_dsn = topo.superuser_dsn(topo.primary)
        start_lsn = query(primary_dsn, "SELECT pg_current_wal_lsn()::text")
        end = time.monotonic() + IDLE_SECONDS
        while time.monotonic() < end:
            s = daemon.scrape()
            sample: dict[str, float | None] = {
                "t": time.monotonic(),
                "replica_lag": replica_lag(s),
                "from_primary": s.value(c.PG_REPLICA_LAG_FROM_PRIMARY.name, **REPLICA),
            }
            for stage in ("write", "flush", "replay"):
                labels = {**PRIMARY, "replica": "replica-1", "stage": stage}
                sample[f"{stage}_s"] = s.value(c.PG_REPLICATION_LAG_SECONDS.name, **labels)
                sample[f"{stage}_b"] = s.value(c.PG_REPLICATION_LAG_BYTES.name, **labels)
            self.samples.append(sample)
            time.sleep(0.5)
        end_lsn = query(primary_dsn, "SELECT pg_current_wal_lsn()::text")
        self.lsn_moved = int(query(primary_dsn, "SELECT pg_wal_lsn_diff(%s, %s)",
                                   end_lsn, start_lsn))


@pytest.fixture(scope="module", autouse=True)
def idle_watch() -> Iterator[IdleWatch]:
    watch = IdleWatch()
    thread = threading.Thread(target=watch.run, name="idle-watch", daemon=True)
    thread.start()
    yield watch
    thread.join(IDLE_SECONDS + 120)


# --------------------------------------------------------------------------- scenarios


def test_replica_label_is_the_configured_target_name(topology: Topology) -> None:
    """The primary names the walsender after the configured target (matched by its slot),
    not after application_name: "lag of X" needs no label_replace."""
    doc = yaml.safe_load(topology.tierwatch_config(poll_interval=INTERVAL))
    doc["clusters"][0]["postgres"][1]["name"] = "reader-east"
    daemon = DaemonProcess(yaml.safe_dump(doc)).start()
    try:
        def named() -> bool:
            s = daemon.scrape()
            return s.value(c.PG_REPLICATION_LAG_BYTES.name, replica="reader-east",
                           stage="replay", **PRIMARY) is not None
        wait_until(named, 10, 'replication lag series with replica="reader-east"')
        s = daemon.scrape()
        assert not s.find(c.PG_REPLICATION_LAG_BYTES.name, replica="replica-1")
        assert s.value(c.PG_REPLICATION_LAG_SECONDS.name, replica="reader-east", stage="replay",
                       **PRIMARY) is not None
    finally:
        daemon.stop()
    assert_clean_log(daemon)


def test_paused_replay_lag_follows_the_stall(topology: Topology, daemon: DaemonProcess) -> None:
    primary_dsn = topology.superuser_dsn(topology.primary)
    replica_dsn = topology.superuser_dsn(topology.replica)
    wait_until(lambda: caught_up(daemon), 15, "replica caught up")
    rows: list[tuple[float, float, float | None, float | None, float | None]] = []
    try:
        with Writer(topology), psycopg.connect(primary_dsn, autocommit=True) as primary:
            time.sleep(2 * INTERVAL)
            query(replica_dsn, "SELECT pg_wal_replay_pause()")
            paused_at = time.time()
            wait_until(lambda: query(replica_dsn, "SELECT pg_get_wal_replay_pause_state()")
                       == "paused", 5, "replay paused")
            replay_lsn = query(replica_dsn, "SELECT pg_last_wal_replay_lsn()::text")

            def diff() -> float:
                row = primary.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)",
                                      (replay_lsn,)).fetchone()
                assert row is not None
                return float(row[0])

            diffs: list[tuple[float, float]] = []  # (time, bytes the replica is behind)
            while time.time() - paused_at < STALL_SECONDS:
                diffs.append((time.time(), diff()))
                s = daemon.scrape()
                upper = diff()
                stall = time.time() - paused_at
                rows.append((stall, upper, replica_lag(s),
                             s.value(c.PG_REPLICA_LAG_BYTES.name, **REPLICA),
                             s.value(c.PG_REPLICATION_LAG_BYTES.name, replica="replica-1",
                                     stage="replay", **PRIMARY)))
                # "within one poll": the value is the diff of a moment in the last interval
                # (plus poll duration and jitter), never newer than now
                now = time.time()
                lower = max((d for t, d in diffs if t <= now - 1.8 * INTERVAL), default=0.0)
                _, _, lag, replica_bytes, primary_bytes = rows[-1]
                if stall > 3 * INTERVAL:
                    assert lag is not None and abs(lag - stall) <= 3, rows[-1]
                    for value in (replica_bytes, primary_bytes):
                        assert value is not None and lower <= value <= upper, (lower, rows[-1])
                time.sleep(0.4)
            assert query(replica_dsn, "SELECT pg_last_wal_replay_lsn()::text") == replay_lsn
        # writes stopped; resume: both views must read ~0 within two intervals
        query(replica_dsn, "SELECT pg_wal_replay_resume()")
        resumed = time.monotonic()

        def recovered() -> bool:
            s = daemon.scrape()
            return (replica_lag(s) == 0
                    and s.value(c.PG_REPLICA_LAG_BYTES.name, **REPLICA) == 0
                    and s.value(c.PG_REPLICATION_LAG_BYTES.name, replica="replica-1",
                                stage="replay", **PRIMARY) == 0
                    and s.value(c.PG_REPLAY_PAUSED.name, **REPLICA) == 0)

        wait_until(recovered, 2 * INTERVAL + 1.0, "lag back to 0 after resume")
        print(f"\nstall: last lag {rows[-1][2]:.2f}s at {rows[-1][0]:.2f}s of real stall; "
              f"max error {max(abs(r[2] - r[0]) for r in rows if r[0] > 3 and r[2]):.2f}s; "
              f"recovered {time.monotonic() - resumed:.2f}s after resume")
    finally:
        query(replica_dsn, "SELECT pg_wal_replay_resume()")
    assert rows[-1][0] >= STALL_SECONDS - 1


def test_broken_link_lag_grows_although_everything_received_is_replayed(
    topology: Topology, daemon: DaemonProcess
) -> None:
    replica_dsn = topology.superuser_dsn(topology.replica)
    wait_until(lambda: caught_up(daemon), 15, "replica caught up")
    pid = int(query(replica_dsn, "SELECT pid FROM pg_stat_wal_receiver"))
    try:
        with Writer(topology):
            time.sleep(INTERVAL)
            os.kill(pid, signal.SIGSTOP)
            frozen_at = time.time()
            time.sleep(8)
            s = daemon.scrape()
            stall = time.time() - frozen_at
            lag = replica_lag(s)
            assert query(replica_dsn, "SELECT pg_last_wal_receive_lsn() = "
                                      "pg_last_wal_replay_lsn()") is True
            assert lag is not None and abs(lag - stall) <= 3, (lag, stall)
            print(f"\nfrozen walreceiver: lag {lag:.2f}s after {stall:.2f}s")
            os.kill(pid, signal.SIGCONT)
            thawed = time.monotonic()

            def recovered() -> bool:
                lag = replica_lag(daemon.scrape())
                return lag is not None and lag < 1

            wait_until(recovered, 10, "lag below 1 s after SIGCONT")
            print(f"recovered {time.monotonic() - thawed:.2f}s after SIGCONT")
    finally:
        os.kill(pid, signal.SIGCONT)


def test_stopped_replica(topology: Topology, daemon: DaemonProcess) -> None:
    slot = {**PRIMARY, "slot": SLOT_NAME, "slot_type": "physical"}
    s = daemon.scrape()
    assert s.value(c.PG_REPLICAS_STREAMING.name, **PRIMARY) == 1
    assert s.value(c.PG_SLOT_ACTIVE.name, **slot) == 1
    topology.replica.stop()
    try:
        with Writer(topology):
            def released() -> Scrape | None:
                s = daemon.scrape()
                ok = (s.value(c.PG_REPLICAS_STREAMING.name, **PRIMARY) == 0
                      and s.value(c.PG_SLOT_ACTIVE.name, **slot) == 0
                      and s.value(c.UP.name, kind="postgres", **REPLICA) == 0)
                return s if ok else None

            s = wait_until(released, 3 * INTERVAL + 1, "streaming 0, slot inactive, replica down")
            first = s.value(c.PG_SLOT_RETAINED_BYTES.name, **slot)
            assert first is not None
            wait_until(lambda: (daemon.scrape().value(c.PG_SLOT_RETAINED_BYTES.name, **slot)
                                or 0) > first + 50_000, 10, "retained bytes growing")
            assert not daemon.scrape().find(c.PG_REPLICA_LAG_SECONDS.name, **REPLICA)
    finally:
        topology.replica.start()
        topology.wait_replica_streaming()
    wait_until(lambda: daemon.scrape().value(c.PG_SLOT_ACTIVE.name, **slot) == 1, 10,
               "slot active again")


def test_promotion_without_restart(private_topology: Topology) -> None:
    topo = private_topology
    daemon = start_daemon(topo)

    def primaries() -> float | None:  # CONTRACT §6, static clusters too
        return daemon.scrape().value("tierwatch_cluster_primaries", cluster="main")

    try:
        pid = daemon.proc.pid if daemon.proc else None
        wait_until(lambda: primaries() == 1, 2 * INTERVAL + 0.5, "one primary")
        topo.primary.stop()
        stopped = time.monotonic()
        wait_until(lambda: daemon.scrape().value(c.UP.name, kind="postgres", **PRIMARY) == 0,
                   2 * INTERVAL + 0.5, "old primary down")
        wait_until(lambda: primaries() == 0, 1, "no primary counted")
        print(f"\nold primary down {time.monotonic() - stopped:.2f}s after stop")
        topo.promote_replica()
        promoted = time.monotonic()
        wait_until(lambda: daemon.scrape().value(c.PG_IN_RECOVERY.name, **REPLICA) == 0,
                   2 * INTERVAL + 0.5, "promoted replica reporting in_recovery 0")
        print(f"in_recovery 0 {time.monotonic() - promoted:.2f}s after promotion")

        def primary_view() -> bool:
            s = daemon.scrape()
            return (s.value(c.PG_REPLICAS_STREAMING.name, **REPLICA) == 0
                    and not s.find(c.PG_REPLICA_LAG_SECONDS.name, **REPLICA)
                    and s.value(c.UP.name, kind="postgres", **PRIMARY) == 0)

        wait_until(primary_view, 3 * INTERVAL, "the promoted target reporting a primary view")
        wait_until(lambda: primaries() == 1, 1, "the promoted replica counted")
        # the old primary started again as it was: two primaries, a split brain
        topo.primary.start()
        wait_until(lambda: primaries() == 2, 2 * INTERVAL + 1, "two primaries counted")
        assert daemon.proc is not None and daemon.proc.poll() is None and daemon.proc.pid == pid
    finally:
        daemon.stop()
    assert_clean_log(daemon)


def test_idle_primary_for_90s(idle_watch: IdleWatch) -> None:
    """Primary idle for 90 s: replica lag < 1 s throughout (and 0 when caught up), and the
    primary-view lag seconds present and 0 — although pg_stat_replication's lag columns
    turn NULL ~10 s into the idle period."""
    assert idle_watch.done.wait(IDLE_SECONDS + 120), "idle watch did not finish"
    if idle_watch.error is not None:
        raise idle_watch.error
    samples = idle_watch.samples
    assert samples and samples[-1]["t"] - samples[0]["t"] >= IDLE_SECONDS - 2  # type: ignore[operator]
    lags = [s["replica_lag"] for s in samples]
    assert all(lag is not None and lag < 1 for lag in lags), lags
    assert all(s["from_primary"] == 1 for s in samples)
    for stage in ("write", "flush", "replay"):
        assert all(s[f"{stage}_b"] is not None for s in samples), stage
        # a stage caught up in bytes reads exactly 0 s, never a stale measurement or NULL
        caught_up = [s[f"{stage}_s"] for s in samples if s[f"{stage}_b"] == 0]
        assert all(v == 0 for v in caught_up), (stage, caught_up)
        # An idle primary still writes a record now and then (a running-xacts snapshot,
        # lsn_moved bytes in all): until the replica reports it, the stage is bytes behind
        # and PostgreSQL may have no lag measurement yet, so the seconds series is left out
        # (never invented). That must stay a passing moment, not a state.
        in_flight = [(s[f"{stage}_b"], s[f"{stage}_s"]) for s in samples
                     if s[f"{stage}_b"] != 0]
        assert len(in_flight) <= 0.05 * len(samples), (stage, in_flight)
    zero = sum(1 for s in samples if s["replay_s"] == 0 and s["replica_lag"] == 0)
    print(f"\nidle {len(samples)} samples, max replica lag {max(lags):.3f}s "  # type: ignore[type-var]
          f"({zero} samples all 0), primary WAL moved {idle_watch.lsn_moved} bytes")
    assert zero >= 0.9 * len(samples)

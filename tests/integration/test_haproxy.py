"""Reads through a real HAProxy whose checks ask tierwatch: on the replica while it is fresh,
on the primary (the backup server) when replay stalls, the replica freezes or tierwatch
itself stops. HAProxy runs deploy/haproxy/haproxy.cfg with only its addresses changed.

One stack for the module: the session topology, a tierwatch child process polling every
second and one HAProxy; the last test stops that tierwatch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.faults.faultkit import frozen
from tests.haproxy import SHIPPED, HAProxy, check_config, wait_status
from tests.routingkit import TOLERANCE, Answer, Prober, Writer, replay_paused
from tests.support import DaemonProcess, http_get
from tests.topology import HOST, Topology

pytestmark = pytest.mark.integration

INTERVAL = 1.0  # tierwatch's poll interval
MAX_LAG = 1.0  # the read listener's ?max_lag=1s
CHECK_INTER = 0.5  # the shipped `inter 500ms`, fall 1
BOUND = MAX_LAG + INTERVAL + 1  # issue 13's bound for the endpoint's 503
READS = "pg-read"
REPLICA_ROLE, PRIMARY_ROLE = 1, 0


@dataclass
class Stack:
    topology: Topology
    daemon: DaemonProcess
    proxy: HAProxy

    def reader(self, port: int) -> Callable[[], tuple[int, str]]:
        """One read through HAProxy on a new connection: 1 on a replica, 0 on the primary."""
        def read() -> tuple[int, str]:
            with psycopg.connect(host=HOST, port=port, user="postgres", dbname="postgres",
                                 connect_timeout=2, autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            assert row is not None
            return (REPLICA_ROLE if row[0] else PRIMARY_ROLE), ""
        return read


@pytest.fixture(scope="module")
def stack(topology: Topology) -> Iterator[Stack]:
    began = time.monotonic()
    daemon = DaemonProcess(topology.tierwatch_config(poll_interval=INTERVAL)).start()
    proxy = HAProxy(("127.0.0.1", daemon.port), (HOST, topology.primary.port),
                    (HOST, topology.replica.port))
    try:
        proxy.start()
        wait_status(proxy, READS, "replica-1", "UP", 20)
        wait_status(proxy, "pg-write", "primary", "UP", 20)
        # HAProxy starts every server UP: the replica leaves pg-write at its first check
        wait_status(proxy, "pg-write", "replica-1", "DOWN", 5)
        yield Stack(topology, daemon, proxy)
    finally:
        proxy.stop()
        daemon.stop()
        print(f"\ntest_haproxy: module ran {time.monotonic() - began:.1f}s")
    assert "Traceback" not in daemon.log_text(), daemon.log_tail(60)


def test_the_shipped_config_is_valid() -> None:
    result = check_config(SHIPPED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_reads_land_on_the_fresh_replica_and_writes_on_the_primary(stack: Stack) -> None:
    reads = [stack.reader(stack.proxy.read_port)()[0] for _ in range(20)]
    assert reads == [REPLICA_ROLE] * 20
    writes = [stack.reader(stack.proxy.write_port)()[0] for _ in range(5)]
    assert writes == [PRIMARY_ROLE] * 5
    assert stack.proxy.status("pg-write")["replica-1"].startswith("DOWN")


def test_stalled_replay_moves_reads_to_the_primary_and_back(stack: Stack) -> None:
    with Prober(stack.reader(stack.proxy.read_port), period=0.05) as reads, \
            Writer(stack.topology) as writer:
        with replay_paused(stack.topology, writer) as stall:
            moved = reads.wait_for(lambda a: a.status == PRIMARY_ROLE, stall.requested,
                                   BOUND + CHECK_INTER + 3, "a read on the primary")
            true_lag = stall.true_lag(moved.sent, writer)
        resumed = time.time()
        back = reads.wait_for(lambda a: a.status == REPLICA_ROLE, resumed, 3 * INTERVAL + 3,
                              "reads back on the replica")
    late = moved.received - stall.requested
    print(f"\nhaproxy stall: reads on the primary {late:.2f}s after the pause (endpoint bound "
          f"{BOUND:g}s + one check {CHECK_INTER:g}s), true lag then >= {true_lag:.2f}s; "
          f"back on the replica {back.received - resumed:.2f}s after resume")
    assert late <= BOUND + CHECK_INTER, late
    assert true_lag >= MAX_LAG - TOLERANCE, true_lag
    before = [a for a in reads.answers if a.sent < moved.sent]
    assert before and {a.status for a in before[:-1]} == {REPLICA_ROLE}, \
        [(a.status, a.body[:120]) for a in before if a.status != REPLICA_ROLE]
    # shutdown-sessions: the one read in flight when the replica is marked down is cut
    assert before[-1].status == REPLICA_ROLE or was_cut(before[-1]), before[-1]


def was_cut(answer: Answer) -> bool:
    return answer.status == -1 and "server closed the connection unexpectedly" in answer.body


def test_a_frozen_replica_is_taken_out(stack: Stack) -> None:
    with Prober(stack.reader(stack.proxy.read_port), period=0.1) as reads:
        with frozen(stack.topology.replica):
            began = time.time()
            down = wait_status(stack.proxy, READS, "replica-1", "DOWN", 3 * INTERVAL + 3)
            moved = reads.wait_for(lambda a: a.status == PRIMARY_ROLE, down, 5,
                                   "a read on the primary")
            time.sleep(1)
            after = {a.status for a in reads.answers if a.sent > moved.received}
            assert after == {PRIMARY_ROLE}, after
        thawed = time.time()
        reads.wait_for(lambda a: a.status == REPLICA_ROLE, thawed, 20, "reads back on the replica")
    print(f"\nhaproxy frozen: replica DOWN {down - began:.2f}s after SIGSTOP")


def test_tierwatch_stopped_sends_reads_to_the_backup(stack: Stack) -> None:
    """The documented failure mode: no tierwatch, no passing check; reads go to the
    primary (not checked through tierwatch), writes have no server until it is back."""
    status, body = http_get(stack.daemon.url + "/replica/main/replica-1")
    assert status == 200 and json.loads(body)["healthy"]
    with Prober(stack.reader(stack.proxy.read_port), period=0.1) as reads:
        stopped_at = time.time()
        assert stack.daemon.stop() == 0
        down = wait_status(stack.proxy, READS, "replica-1", "DOWN", 5)
        moved = reads.wait_for(lambda a: a.status == PRIMARY_ROLE, stopped_at, 5,
                               "a read on the backup primary")
        time.sleep(1)
        after = {a.status for a in reads.answers if a.sent > moved.received}
        assert after == {PRIMARY_ROLE}, after
    wait_status(stack.proxy, "pg-write", "primary", "DOWN", 5)
    with pytest.raises(psycopg.OperationalError):
        stack.reader(stack.proxy.write_port)()
    print(f"\nhaproxy without tierwatch: replica DOWN {down - stopped_at:.2f}s, reads on the "
          f"primary {moved.received - stopped_at:.2f}s after tierwatch stopped")

"""What the routing tests share: a writer that remembers its commits, a prober that asks
an endpoint again and again, and a replay stall that knows when the replica's data stopped."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg

from tests.support import http_get, wait_until
from tests.topology import Topology

TOLERANCE = 0.35  # issue 13: the judged lag is within this of the true staleness


class Writer:
    """Commits a small insert on the primary every `period` s; `commits` are the client's
    clock right after each commit returned (at or after the commit itself)."""

    def __init__(self, topo: Topology, period: float = 0.05) -> None:
        self.dsn = topo.superuser_dsn(topo.primary, "app")
        self.period = period
        self.commits: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self._stop.is_set():
                    conn.execute("INSERT INTO items(payload) VALUES ('routing')")
                    self.commits.append(time.time())
                    self._stop.wait(self.period)
        except BaseException as exc:  # reported by __exit__
            self.error = exc

    def __enter__(self) -> Writer:
        self._thread.start()
        wait_until(lambda: self.commits or self.error, 5, "first write on the primary")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        if self.error is not None:
            raise AssertionError(f"writer failed: {self.error!r}")

    def gap_near(self, moment: float) -> float:
        """The longest time between two commits within 2 s of `moment`: the replica's data
        turned stale at most this long after its last replayed commit."""
        times = [t for t in self.commits if abs(t - moment) <= 2]
        return max((b - a for a, b in itertools.pairwise(times)), default=self.period)


@dataclass
class Answer:
    sent: float
    received: float
    status: int
    body: str


@dataclass
class Prober:
    """Asks `ask()` every `period` s from a thread, keeping every answer."""

    ask: Callable[[], tuple[int, str]]
    period: float = 0.05
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.time()
            try:
                status, body = self.ask()
            except Exception as exc:  # a refused connection is an answer too
                status, body = -1, repr(exc)
            self.answers.append(Answer(sent, time.time(), status, body))
            self._stop.wait(self.period)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def first(self, pred: Callable[[Answer], bool], after: float = 0.0) -> Answer | None:
        return next((a for a in list(self.answers) if a.sent >= after and pred(a)), None)

    def wait_for(self, pred: Callable[[Answer], bool], after: float, timeout: float,
                 what: str) -> Answer:
        try:
            return wait_until(lambda: self.first(pred, after), timeout, what, interval=0.02)
        except AssertionError as exc:  # say what was answered instead
            last = [(round(a.sent - after, 2), a.status, a.body[:120]) for a in self.answers[-3:]]
            raise AssertionError(f"{exc}; last answers (s after start, status, body): {last}"
                                 ) from None


def http_asker(url: str) -> Callable[[], tuple[int, str]]:
    def ask() -> tuple[int, str]:
        status, body = http_get(url, timeout=2)
        return status, body.decode(errors="replace")
    return ask


@dataclass
class Stall:
    requested: float = 0.0  # just before pg_wal_replay_pause(): the stall began at or after
    last_replayed: float = 0.0  # the replica's last replayed commit (its data's age)

    def true_lag(self, moment: float, writer: Writer) -> float:
        """A lower bound of how stale the replica's data is at `moment` (the primary's first
        commit that the replica lacks came at most one writer gap after the last replayed)."""
        return moment - self.last_replayed - writer.gap_near(self.last_replayed)


@contextlib.contextmanager
def replay_paused(topo: Topology, writer: Writer) -> Iterator[Stall]:
    """Pauses WAL replay on the replica (as superuser) once it has replayed one of the
    writer's commits, and resumes it on exit."""
    replayed = "SELECT coalesce(extract(epoch FROM pg_last_xact_replay_timestamp()), 0)"
    # a replica that has replayed nothing since its start reports NULL: no lower bound.
    # A commit's own timestamp precedes the client's clock after it by a loopback round
    # trip: a commit within one writer period before the first is taken for the writer's.
    first = writer.commits[0] - writer.period
    wait_until(lambda: float(topo.psql(topo.replica, replayed)) >= first, 5,
               "the replica replaying the writer's commits")
    stall = Stall(requested=time.time())
    topo.psql(topo.replica, "SELECT pg_wal_replay_pause()")
    try:
        wait_until(lambda: topo.psql(topo.replica, "SELECT pg_get_wal_replay_pause_state()")
                   == "paused", 5, "replay paused")
        stall.last_replayed = float(topo.psql(topo.replica, replayed))
        yield stall
    finally:
        topo.psql(topo.replica, "SELECT pg_wal_replay_resume()")

"""What a source is: one kind of target's connection, its one-round-trip fetch and its
collectors. The poller knows only this protocol; nothing outside `sources/` branches on kind."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from exporter.collectors.base import Output
from exporter.connections import PoolStats
from exporter.model import Kind, Metric, PollContext
from exporter.replication import Observation
from exporter.secrets import SECRETS

log = logging.getLogger(__name__)


class PollError(Exception):
    """A poll failed as a whole; the message is one redacted line."""


def describe(exc: BaseException) -> str:
    """One line that says what went wrong, without any configured secret."""
    if isinstance(exc, PollError):
        text = str(exc)
    else:
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else ""
        text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return SECRETS.scrub(text)


@dataclass(slots=True)
class Fetched:
    """What one successful fetch found, collector by collector."""

    metrics: list[Metric] = field(default_factory=list)
    observed: list[Observation] = field(default_factory=list)
    collector_ok: dict[str, bool] = field(default_factory=dict)
    # collector -> one redacted line saying why it failed this poll
    failures: dict[str, str] = field(default_factory=dict)

    def add(self, collector: str, output: Output | None, why: str | None = None) -> None:
        self.collector_ok[collector] = output is not None
        if output is None:
            self.failures[collector] = why or "its output could not be parsed"
            return
        for item in output:
            if isinstance(item, Metric):
                self.metrics.append(item)
            else:
                self.observed.append(item)


class Source(Protocol):
    kind: ClassVar[Kind]
    # sources whose polls sample what the others are measured against (PostgreSQL's WAL
    # positions) name a group: the scheduler spreads a cluster's members of it evenly
    phase_group: ClassVar[str | None]

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def fetch(self, ctx: PollContext) -> Fetched:
        """One poll's worth of data; raises (PollError or the driver's error) when the
        target cannot answer. The caller bounds it with the poll deadline."""
        ...

    def stats(self) -> PoolStats: ...

    def stalled_reason(self) -> str | None:
        """Why a fetch that ran into the deadline got nowhere, when the source knows
        (the last failed connection attempt), else None."""
        ...


def guarded(name: str, parse: Callable[[], Iterable[Metric | Observation]]) -> Output | None:
    """Runs one collector's parser; a bug or odd server output (including a label value
    that is not text, refused by MetricSpec) drops only that collector."""
    try:
        return list(parse())
    except Exception:
        log.debug("collector %s raised", name, exc_info=True)
        return None

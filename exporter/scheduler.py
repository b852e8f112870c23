"""One APScheduler job per target: its interval, jitter, never two at once, missed runs merged.

Targets of one phase group (the PostgreSQL members of a cluster) are spread evenly over
their interval instead of polled together: each poll of one member is a sample of the WAL
stream the others are dated against, so spread samples date a replica's lag finer.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Group:
    anchor: datetime  # the group's phase 0
    interval: float
    phases: dict[str, float] = field(default_factory=dict)  # job id -> fraction of interval

    def place(self, job_id: str) -> float:
        """The middle of the widest gap between the members' phases (0 for the first)."""
        taken = sorted(self.phases.values())
        if not taken:
            phase = 0.0
        else:
            gaps = [(b - a, a) for a, b in zip(taken, [*taken[1:], taken[0] + 1.0], strict=True)]
            width, start = max(gaps, key=lambda gap: (gap[0], -gap[1]))
            phase = (start + width / 2) % 1.0
        self.phases[job_id] = phase
        return phase


def first_run(anchor: datetime, phase: float, interval: float, now: datetime) -> datetime:
    """The first time at `phase` of the interval (counted from `anchor`) that is after now:
    never more than one interval away, whether the anchor is past or still to come (a new
    group's anchor is drawn in the future, and a member's first phased poll must not wait
    for it: that would leave a gap of up to two intervals after its first poll)."""
    at = anchor + timedelta(seconds=phase * interval)
    periods = (now - at).total_seconds() // interval + 1
    return at + timedelta(seconds=periods * interval)


class PollScheduler:
    def __init__(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._groups: dict[Hashable, _Group] = {}
        # APScheduler logs every run at INFO: far too chatty at a 1 s interval
        logging.getLogger("apscheduler").setLevel(logging.WARNING)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def _phase_time(self, job_id: str, interval: float, group: Hashable,
                    after: datetime) -> datetime:
        known = self._groups.get(group)
        if known is None or known.interval != interval:
            # groups run at random phases of their own, so clusters do not poll in step
            anchor = after + timedelta(seconds=random.uniform(0, interval))
            known = self._groups[group] = _Group(anchor, interval)
        return first_run(known.anchor, known.place(job_id), interval, after)

    def add(
        self,
        job_id: str,
        job: Callable[[], Awaitable[None]],
        interval: float,
        jitter: float,
        group: Hashable | None = None,
    ) -> None:
        # spread first polls over the jitter so hundreds of targets do not start at once
        first = datetime.now(UTC) + timedelta(seconds=random.uniform(0, jitter))
        run_jitter = jitter or None
        if group is not None:
            # a group member polls once at once (so /readyz does not wait for its phase),
            # then at its phase, which comes after that first poll's deadline (at most
            # 0.8 x the interval), so the two never overlap. The trigger counts from the
            # phase, and members poll without jitter: their spread is the phases.
            self._scheduler.add_job(job, DateTrigger(run_date=first, timezone=UTC),
                                    id=f"{job_id}#first", name=job_id, replace_existing=True,
                                    misfire_grace_time=max(1, int(interval)))
            after = first + timedelta(seconds=0.8 * interval)
            first, run_jitter = self._phase_time(job_id, interval, group, after), None
        self._scheduler.add_job(
            job,
            IntervalTrigger(seconds=interval, jitter=run_jitter, start_date=first, timezone=UTC),
            id=job_id,
            name=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(interval)),
            next_run_time=first,
            replace_existing=True,
        )

    def remove(self, job_id: str) -> None:
        for group in self._groups.values():
            group.phases.pop(job_id, None)
        for job in (job_id, f"{job_id}#first"):
            if self._scheduler.get_job(job) is not None:
                self._scheduler.remove_job(job)

"""One APScheduler job per target: its interval, jitter, never two at once, missed runs merged."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)


class PollScheduler:
    def __init__(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone=UTC)
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

    def add(
        self,
        job_id: str,
        job: Callable[[], Awaitable[None]],
        interval: float,
        jitter: float,
    ) -> None:
        # spread first polls over the jitter so hundreds of targets do not start at once
        first = datetime.now(UTC) + timedelta(seconds=random.uniform(0, jitter))
        self._scheduler.add_job(
            job,
            IntervalTrigger(seconds=interval, jitter=jitter or None, timezone=UTC),
            id=job_id,
            name=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(interval)),
            next_run_time=first,
            replace_existing=True,
        )

    def remove(self, job_id: str) -> None:
        if self._scheduler.get_job(job_id) is not None:
            self._scheduler.remove_job(job_id)

"""`tierwatch run` with a record of every poll: when it was due, started and ended (bench only).

    python bench/twprobe.py RECORDS.jsonl -c CONFIG [--spread-first-polls]

The daemon is the real one (exporter.cli.main); three thin wrappers write JSON lines:

- APScheduler's own events give each run's scheduled time (the jittered fire time the
  scheduler computed: EVENT_JOB_SUBMITTED), runs it merged (`coalesced` > 1), runs it
  dropped as missed (EVENT_JOB_MISSED) or skipped because the previous poll still ran
  (EVENT_JOB_MAX_INSTANCES);
- the job coroutine records its real start and end (`time.time()`), so lateness is
  start − due, whatever delayed it (a busy event loop, a late scheduler wake-up);
- SnapshotStore.body records each render: its duration and the exposition's size.

Cost: one dict and one buffered line per poll. `--spread-first-polls` spreads each target's
first poll uniformly over its whole interval instead of over the jitter (the candidate fix
measured in docs/benchmarks.md); it changes nothing else.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv: list[str]) -> int:
    from apscheduler.events import (
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
        EVENT_JOB_SUBMITTED,
    )

    import exporter.daemon as daemon_mod
    import exporter.scheduler as scheduler_mod
    import exporter.snapshot as snapshot_mod
    from exporter import cli

    records = Path(argv[0])
    spread = "--spread-first-polls" in argv
    args = [a for a in argv[1:] if a != "--spread-first-polls"]
    out = records.open("w", buffering=1 << 16)
    due: dict[str, deque[tuple[float, int]]] = defaultdict(deque)

    lock = threading.Lock()  # HTTP threads record renders

    def write(record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        with lock:
            out.write(line)

    def listener(event: Any) -> None:
        if event.code == EVENT_JOB_SUBMITTED:
            times = event.scheduled_run_times
            due[event.job_id].append((times[-1].timestamp(), len(times)))
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            write({"event": "skipped", "job": event.job_id, "at": time.time(),
                   "due": event.scheduled_run_times[-1].timestamp()})
        elif event.code == EVENT_JOB_MISSED:
            when = event.scheduled_run_time.timestamp()
            queue = due[event.job_id]
            if queue and queue[0][0] == when:
                queue.popleft()
            write({"event": "missed", "job": event.job_id, "at": time.time(), "due": when})

    original_start = scheduler_mod.PollScheduler.start

    def start(self: Any) -> None:
        self._scheduler.add_listener(
            listener, EVENT_JOB_SUBMITTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        original_start(self)

    scheduler_mod.PollScheduler.start = start  # type: ignore[method-assign]

    if spread:
        original_add = scheduler_mod.PollScheduler.add

        def add(self: Any, job_id: str, job: Any, interval: float, jitter: float) -> None:
            original_add(self, job_id, job, interval, jitter)
            first = datetime.now(UTC) + timedelta(seconds=random.uniform(0, interval))
            self._scheduler.modify_job(job_id, next_run_time=first)

        scheduler_mod.PollScheduler.add = add  # type: ignore[method-assign]

    original_job = daemon_mod.Daemon._job

    def job(self: Any, poller: Any) -> Any:
        run = original_job(self, poller)
        key = str(poller.id)
        kind = poller.kind.value

        async def timed() -> None:
            started = time.time()
            queue = due.get(key)
            scheduled, merged = queue.popleft() if queue else (float("nan"), 0)
            await run()
            last = poller.last
            write({"job": key, "kind": kind, "due": scheduled, "coalesced": merged,
                   "start": started, "end": time.time(),
                   "up": bool(last.up) if last is not None else None})

        return timed

    daemon_mod.Daemon._job = job  # type: ignore[method-assign]

    original_body = snapshot_mod.SnapshotStore.body

    def body(self: Any, gzipped: bool = False) -> bytes:
        before = self._rendered
        t0 = time.perf_counter()
        result = original_body(self, gzipped)
        if self._rendered is not before or (gzipped and before.gzipped is None):
            write({"render": time.perf_counter() - t0, "gzipped": gzipped,
                   "bytes": len(result), "at": time.time()})
        return result

    snapshot_mod.SnapshotStore.body = body  # type: ignore[method-assign]

    try:
        return cli.main(args)
    finally:
        out.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A reload never blocks the event loop: polls stay on time while the settings file is read
from a FIFO that answers only after 3 s."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import yaml

from tests.support import DaemonProcess, wait_until
from tests.topology import Topology

POLL = 0.5


def _polls(daemon: DaemonProcess) -> float:
    return daemon.scrape().value("tierwatch_poll_duration_seconds_count", target="cache") or 0.0


def test_polls_stay_on_time_while_a_reload_reads_a_slow_fifo(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess],
) -> None:
    config = yaml.safe_dump({"poll_interval": POLL, "poll_jitter": 0, "clusters": [{
        "name": "main", "redis": [{"name": "cache", "url": topology.redis_url()}]}]})
    daemon = daemon_factory(config)
    wait_until(lambda: _polls(daemon) >= 2, 10, "two polls")

    path = daemon.config_path
    path.unlink()
    os.mkfifo(path)

    def answer_late() -> None:
        time.sleep(3.0)
        with path.open("w") as fifo:  # blocks until the daemon opens it to read
            fifo.write(config)

    writer = threading.Thread(target=answer_late, daemon=True)
    writer.start()
    daemon.signal(signal.SIGHUP)
    start, polls_before = time.monotonic(), _polls(daemon)
    while writer.is_alive() and time.monotonic() - start < 2.5:
        time.sleep(0.1)
    polls_during = _polls(daemon) - polls_before
    # 2.5 s at a 0.5 s interval: about 5 polls; a loop blocked on the FIFO would make none
    assert polls_during >= 3, f"only {polls_during} polls while the reload waited"
    writer.join(10)
    wait_until(lambda: "configuration reloaded" in daemon.log_text(), 10,
               f"the reload finished (log: {daemon.log_tail()})")

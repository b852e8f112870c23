"""A target's own poll statistics, counted by prometheus_client's metric types."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, disable_created_metrics
from prometheus_client.samples import Sample

from exporter import catalogue as c

POLL_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"),
)

# the exposition carries no *_created series (they would double every counter and histogram)
disable_created_metrics()


class PollStats:
    """Poll durations and failed polls of one target, kept out of any global registry: the
    renderer adds the target's labels to their samples."""

    def __init__(self) -> None:
        self._duration = Histogram(c.POLL_DURATION.name, c.POLL_DURATION.help,
                                   buckets=POLL_BUCKETS, registry=None)
        self._errors = Counter(c.POLL_ERRORS.name, c.POLL_ERRORS.help, registry=None)

    def observe(self, seconds: float, failed: bool) -> None:
        self._duration.observe(seconds)
        if failed:
            self._errors.inc()

    def errors(self) -> float:
        return next(s.value for family in self._errors.collect() for s in family.samples
                    if s.name == c.POLL_ERRORS.name)

    def duration_samples(self) -> tuple[Sample, ...]:
        return tuple(s for family in self._duration.collect() for s in family.samples)

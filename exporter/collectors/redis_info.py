"""Redis INFO: keyspace hits and misses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from exporter import catalogue as c
from exporter.collectors.base import Output
from exporter.model import PollContext

COUNTERS = (
    ("keyspace_hits", c.REDIS_HITS),
    ("keyspace_misses", c.REDIS_MISSES),
)


class RedisInfo:
    name: ClassVar[str] = "redis_info"

    def parse(self, info: Mapping[str, Any], ctx: PollContext) -> Output:
        out: Output = []
        for field, spec in COUNTERS:
            if field in info:
                out.append(spec(float(info[field])))
        return out

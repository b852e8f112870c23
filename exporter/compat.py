"""What a dependency offers no public hook for, in one place, pinned and tested.

redis-py has no public limit on the size of a reply: its RESP3 parser buffers whatever bulk
length a server announces (up to 512 MiB). A broken or hostile endpoint that announces a
huge bulk string and keeps sending makes each connection buffer it, and the copying stalls
the event loop, so every other target's polls run late. The parser class is a constructor
argument of redis-py's connection (public), but the parser itself is private: this module
subclasses it, for the redis-py versions listed in REDIS_PY_TESTED only
(tests/unit/test_compat.py checks the installed version and the behaviour).
"""

from __future__ import annotations

import redis
from redis._parsers import _AsyncRESP3Parser
from redis.exceptions import InvalidResponse

REDIS_PY_TESTED = ("8.1",)  # major.minor series; pyproject pins the same range

# Every reply tierwatch asks for (INFO, CONFIG GET maxclients) is a few KiB.
MAX_REDIS_BULK_BYTES = 1 << 20


def redis_py_series() -> str:
    return ".".join(redis.__version__.split(".")[:2])


class BoundedRESP3Parser(_AsyncRESP3Parser):
    """redis-py's RESP3 parser (its default), refusing a bulk reply over MAX_REDIS_BULK_BYTES."""

    async def _read(self, length: int) -> bytes:
        if length > MAX_REDIS_BULK_BYTES:
            raise InvalidResponse(f"a bulk reply of {length} bytes refused")
        return await super()._read(length)

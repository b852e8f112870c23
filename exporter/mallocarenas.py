"""One glibc malloc arena for the daemon, unless the environment says otherwise.

glibc gives each thread that allocates while the others are busy an arena of its own, up to
eight per core. The HTTP server answers each connection in a thread, so a burst of
concurrent scrapes leaves up to sixteen arenas here, each keeping the pages it touched:
1.7 MB of resident memory, never given back (docs/benchmarks.md, section 4). Python
threads allocate under the GIL, so the extra arenas buy no parallelism in this process.

glibc fixes the arena limit when a second thread first allocates: call this before any
thread starts. `MALLOC_ARENA_MAX` in the environment is the operator's choice and wins.
Other C libraries (musl) have no arenas; there this does nothing.
"""

from __future__ import annotations

import ctypes
import os

ENV_VAR = "MALLOC_ARENA_MAX"
_M_ARENA_MAX = -8  # glibc's malloc.h


def glibc_version() -> str | None:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return None


def limit_malloc_arenas(arenas: int = 1) -> None:
    """Nothing where glibc is absent or the operator chose a limit."""
    if ENV_VAR not in os.environ and glibc_version() is not None:
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas)

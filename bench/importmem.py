"""Where tierwatch's base RSS comes from: RSS after each import, in a fresh interpreter.

    python -m bench.importmem     (prints JSON: [[module, MB added, MB total], ...])
"""

from __future__ import annotations

import importlib
import json
import os
import sys

# in the order the daemon pulls them in; each line adds what it alone brings
MODULES = (
    "asyncio", "yaml", "pydantic", "pydantic_settings", "psycopg", "psycopg_pool",
    "redis.asyncio", "apscheduler.schedulers.asyncio", "prometheus_client", "bcrypt",
    "exporter.config", "exporter.poller", "exporter.daemon", "exporter.cli",
)


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure() -> list[tuple[str, float, float]]:
    rows = [("(interpreter)", rss_mb(), rss_mb())]
    for name in MODULES:
        before = rss_mb()
        importlib.import_module(name)
        after = rss_mb()
        rows.append((name, after - before, after))
    return rows


if __name__ == "__main__":
    json.dump(measure(), sys.stdout)

"""Re-capture tests/data/redis_info_<name>.txt: the raw `INFO` text (default sections) of a
Redis or Valkey server started by tests/topology.py (maxmemory 16mb, allkeys-lru) with 2 keys
in db0 (1 with a TTL), 1 in db3, 1 hit and 1 miss.

    .venv/bin/python -m tests.data.redis_capture 8.0 redis-8.0     # a tests/trixieservers.py key
    .venv/bin/python -m tests.data.redis_capture NAME -- ARGV...   # any server command
"""

from __future__ import annotations

import sys
from pathlib import Path

import redis

from tests import trixieservers
from tests.topology import Topology

OUT = Path(__file__).parent


def capture(command: list[str]) -> bytes:
    with Topology(redis_server_command=command) as topo:
        client = redis.Redis(topo.redis.host, topo.redis.port, db=0)
        client.flushall()
        client.set("plain", "1")
        client.set("ttl", "1", ex=3600)
        client.get("plain")  # the one hit
        client.get("absent")  # the one miss
        redis.Redis(topo.redis.host, topo.redis.port, db=3).set("other", "1")
        # a raw connection: redis-py's client would parse INFO into a dict
        conn = redis.Connection(topo.redis.host, topo.redis.port)
        try:
            conn.send_command("INFO")
            text = conn.read_response()
        finally:
            conn.disconnect()
        assert isinstance(text, bytes)
        return text


def main(argv: list[str]) -> int:
    name, rest = argv[0], argv[1:]
    command = rest[1:] if rest[:1] == ["--"] else trixieservers.command(rest[0])
    path = OUT / f"redis_info_{name}.txt"
    path.write_bytes(capture(command))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

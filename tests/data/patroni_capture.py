"""Re-capture tests/data/patroni_4.1.5_cluster.json: the raw `GET /cluster` bodies of a real
three-member Patroni cluster (tests/patroni.py) in the states a monitor meets: healthy, every
distinct answer during a planned switchover, right after a crash of the leader (Patroni and
PostgreSQL killed), once a new leader took over, and with the crashed member back.

    .venv/bin/python tests/data/patroni_capture.py

Run as root or as a user that can run PostgreSQL; takes about a minute.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tests.patroni import PatroniCluster, http_json
from tests.topology import wait_until

OUT = Path(__file__).with_name("patroni_4.1.5_cluster.json")


def raw_cluster(pc: PatroniCluster) -> str:
    code, body = http_json(pc.urls()[-1] + "/cluster")
    assert code == 200, code
    return json.dumps(body, sort_keys=True)


def during(pc: PatroniCluster, action: threading.Thread) -> list[str]:
    """Every distinct /cluster answer while `action` runs, and 5 s after."""
    seen: list[str] = []
    action.start()
    until = None
    while until is None or time.monotonic() < until:
        body = raw_cluster(pc)
        if not seen or seen[-1] != body:
            seen.append(body)
        if until is None and not action.is_alive():
            until = time.monotonic() + 5
        time.sleep(0.1)
    return seen


def main() -> None:
    states: dict[str, object] = {}
    with PatroniCluster() as pc:
        pc.write(100)
        states["healthy"] = json.loads(raw_cluster(pc))
        switch = threading.Thread(target=pc.switchover, args=("pg-2",))
        states["switchover"] = [json.loads(b) for b in during(pc, switch)]
        pc.wait_healthy()
        leader = pc.leader()
        assert leader is not None
        pc.kill(leader)
        states["leader_crashed"] = json.loads(raw_cluster(pc))
        wait_until(lambda: pc.leader() not in (None, leader), 60, "a new leader")
        states["failed_over"] = json.loads(raw_cluster(pc))
        pc.restart(leader)
        pc.wait_healthy()
        states["rejoined"] = json.loads(raw_cluster(pc))
    OUT.write_text(json.dumps(states, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

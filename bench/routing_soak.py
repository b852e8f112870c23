"""Idle soak of the read-routing check: an idle, caught-up replica must never flap.

Starts the real topology, `tierwatch run` polling every second and the shipped HAProxy
config (deploy/haproxy/haproxy.cfg); the primary stays idle. For --minutes (default 10) it
asks /replica/main/replica-1 every --every seconds and counts every answer that is not
200; at the end it reads HAProxy's own counters for the replica in pg-read (failed checks,
transitions to DOWN). Issue 13's goal: 0 non-200 answers, 0 failed checks.

    python bench/routing_soak.py [--minutes 10] [--every 0.1] [--json out.json]

Exit code 0 when the goal held, 1 when it did not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.haproxy import HAProxy, wait_status  # noqa: E402
from tests.routingkit import Prober, http_asker  # noqa: E402
from tests.support import DaemonProcess  # noqa: E402
from tests.topology import HOST, Topology  # noqa: E402

PATH = "/replica/main/replica-1"


def _haproxy_counters(proxy: HAProxy) -> dict[str, str]:
    lines = proxy.command("show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "pg-read" and row.get("svname") == "replica-1":
            return {k: row[k] for k in ("status", "chkfail", "chkdown", "lastchg")}
    return {}


def run(minutes: float, every: float) -> dict[str, Any]:
    with Topology() as topo:
        daemon = DaemonProcess(topo.tierwatch_config(poll_interval=1.0)).start()
        proxy = HAProxy(("127.0.0.1", daemon.port), (HOST, topo.primary.port),
                        (HOST, topo.replica.port))
        try:
            proxy.start()
            wait_status(proxy, "pg-read", "replica-1", "UP", 30)
            time.sleep(3)  # let the first checks settle before counting
            before = _haproxy_counters(proxy)
            began = time.time()
            with Prober(http_asker(daemon.url + PATH), period=every) as prober:
                while time.time() - began < minutes * 60:
                    time.sleep(1)
            after = _haproxy_counters(proxy)
        finally:
            proxy.stop()
            daemon.stop()
    answers = prober.answers
    lags = [json.loads(a.body)["lag_seconds"] or 0.0 for a in answers if a.status == 200]
    return {
        "minutes": minutes, "checks": len(answers),
        "statuses": dict(Counter(a.status for a in answers)),
        "not_200": [{"t": round(a.sent - began, 2), "status": a.status, "body": a.body[:200]}
                    for a in answers if a.status != 200][:20],
        "largest_lag_seconds": max(lags, default=None),
        "haproxy_before": before, "haproxy_after": after,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=0.1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.minutes, args.every)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    failed_checks = int(result["haproxy_after"].get("chkfail") or 0) - int(
        result["haproxy_before"].get("chkfail") or 0)
    bad = result["checks"] - result["statuses"].get(200, 0)
    print(f"idle {args.minutes:g} min at a 1 s poll: {result['checks']} checks of {PATH}, "
          f"{bad} not 200, largest lag {result['largest_lag_seconds']}s; HAProxy: "
          f"{failed_checks} failed checks, status {result['haproxy_after'].get('status')}")
    ok = bad == 0 and failed_checks == 0 and result["checks"] > 0
    print(f"- an idle caught-up replica never flaps: {'holds' if ok else 'FAILS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

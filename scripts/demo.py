"""`make demo`: a local primary + replica + PgBouncer + Redis, and tierwatch watching them.

Also runs the demo workload (scripts/workload.py: a read-heavy app with cache-aside reads,
replica reads, writes through PgBouncer, and every few minutes a burst of cache pressure and
pool flooding) so every dashboard panel has live data; `--no-workload` leaves it out.

Runs in the foreground; Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.topology import Topology  # noqa: E402


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _start_workload(topo: Topology, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """scripts/workload.py as a child; the addresses (with passwords) go by environment."""
    replica = topo.replica
    env = {
        **os.environ,
        "WORKLOAD_PGBOUNCER_DSN": topo.app_dsn_via_pgbouncer(),
        "WORKLOAD_REPLICA_DSN":
            f"postgresql://app:{topo.app_password}@{replica.host}:{replica.port}/app",
        "WORKLOAD_REDIS_URL": topo.redis_url(),
    }
    return subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "workload.py"), "--duration", "604800",
         "--rate", str(args.workload_rate), "--cache-pressure", "--pool-flood",
         "--burst-every", "300", "--burst-length", "60", "--report-every", "60",
         "--exit-with-parent"],
        cwd=REPO, env=env, start_new_session=True,  # stopped by us, after Ctrl-C
    )


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default=os.environ.get("DEMO_LISTEN", "127.0.0.1:9847"))
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--no-workload", action="store_true",
                        help="do not run the demo workload (scripts/workload.py)")
    parser.add_argument("--workload-rate", type=float, default=60.0,
                        help="app operations per second of the workload (default 60)")
    parser.add_argument("--workdir", type=Path, default=REPO / ".tierwatch-demo",
                        help="where the demo writes tierwatch's config (default .tierwatch-demo)")
    args = parser.parse_args()

    stop = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    demo_dir: Path = args.workdir
    demo_dir.mkdir(parents=True, exist_ok=True)
    print("demo: starting PostgreSQL primary + replica, PgBouncer and Redis ...", flush=True)
    with Topology() as topo:
        config = demo_dir / "tierwatch.yaml"
        config.write_text(topo.tierwatch_config(poll_interval=args.poll_interval,
                                                listen=args.listen))
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", "-c", str(config)], cwd=REPO,
            start_new_session=True,
        )
        host, _, port = args.listen.rpartition(":")
        url = f"http://{host}:{port}"
        workload: subprocess.Popen[bytes] | None = None
        try:
            if not _wait_ready(url, proc):
                print("demo: tierwatch did not become ready; see its log above", file=sys.stderr)
                return 1
            if not args.no_workload:
                workload = _start_workload(topo, args)
            print(f"""
demo: everything is up.
  status      {url}/   (the whole tier at a glance; its data: {url}/cluster/main)
  routing     {url}/replica/main/replica-1   {url}/primary/main/primary
  metrics     {url}/metrics
  health      {url}/healthz   readiness {url}/readyz
  config      {config}
  primary     {topo.superuser_dsn(topo.primary)}
  replica     {topo.superuser_dsn(topo.replica)}
  pgbouncer   127.0.0.1:{topo.pgbouncer.port} (database app)
  redis       {topo.redis_url()}
  workload    {"off (--no-workload)" if workload is None else
               "scripts/workload.py: cache-aside reads, writes via PgBouncer; in every 5 min "
               "the last minute brings cache pressure and a pool flood"}
  dashboards  dashboards/*.json (docs/dashboards.md: import or provision them)
Press Ctrl-C to stop everything.
""", flush=True)
            while not stop and proc.poll() is None:
                time.sleep(0.5)
        finally:
            _stop(workload)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            print("demo: stopping ...", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

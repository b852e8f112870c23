"""The `tierwatch` command line: run, check, health."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.secrets import ScrubbingFilter

if TYPE_CHECKING:
    from exporter.config import Settings

EXIT_OK, EXIT_DOWN, EXIT_USAGE = 0, 1, 2

# tierwatch installs psycopg without its bundled libraries: it loads the system libpq (and
# the system OpenSSL that Python's ssl module has loaded already) when first imported
NO_LIBPQ = ("psycopg finds no libpq: install the system's (Debian and Ubuntu: libpq5, "
            "RHEL: libpq) or psycopg's bundled one (pip install 'tierwatch[binary]')")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tierwatch",
        description="Watches PostgreSQL, its replicas, PgBouncer and Redis for Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"tierwatch {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help="settings file (or set TIERWATCH_CONFIG)")
    parser.add_argument("-c", "--config", help="settings file (or set TIERWATCH_CONFIG)")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", parents=[common], help="the daemon (default)")
    sub.add_parser("check", parents=[common],
                   help="poll every target once, print the exposition; exit 1 if any is down")
    sub.add_parser("health", parents=[common],
                   help="exit 0 if the daemon at the configured listen address is healthy")
    return parser


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    handler.addFilter(ScrubbingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level != "debug":
        # psycopg logs every failed (re)connect of a down target; the poller already logs
        # each outage once, with the same reason, when it starts and when it ends
        logging.getLogger("psycopg").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "run"
    try:
        import psycopg  # noqa: F401  (the settings parse DSNs with it)
    except ImportError:
        print(f"tierwatch: {NO_LIBPQ}", file=sys.stderr)
        return EXIT_USAGE
    from exporter.config import ConfigError, config_path, load_settings

    try:
        path = config_path(args.config)
        settings = load_settings(path)
    except ConfigError as exc:
        print(f"tierwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if command == "health":
            return _health(settings)
        _setup_logging(settings.log_level)
        if command == "check":
            return asyncio.run(_check(settings))
        from exporter.daemon import run_daemon
        from exporter.mallocarenas import limit_malloc_arenas

        limit_malloc_arenas()  # before the first thread starts, or glibc ignores it
        return asyncio.run(run_daemon(settings, path))
    except ConfigError as exc:
        print(f"tierwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


def _health(settings: Settings) -> int:
    host = settings.listen_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    url = f"http://{host}:{settings.listen_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return EXIT_OK if response.status == 200 else EXIT_DOWN
    except (urllib.error.URLError, OSError) as exc:
        print(f"tierwatch: {url}: not healthy: {exc}", file=sys.stderr)
        return EXIT_DOWN


async def _check(settings: Settings) -> int:
    from exporter.clusterroles import ClusterPrimaries
    from exporter.clusterstate import ClusterState
    from exporter.inventory import Inventory
    from exporter.patronimembers import PatroniMembers
    from exporter.patroniwatch import refresh_all
    from exporter.poller import TargetPoller
    from exporter.render import render

    inventory = Inventory(settings)
    inventory.refresh()
    patroni = PatroniMembers()  # one /cluster read per Patroni cluster, as the daemon's first
    inventory.origins.append(patroni)
    await refresh_all(patroni, inventory.clusters(), settings.connect_timeout)
    watched = inventory.targets()
    clusters = {w.cluster: ClusterState(w.cluster) for w in watched}
    pollers = [TargetPoller(clusters[w.cluster], w.config, settings) for w in watched]
    for poller in pollers:
        await poller.open()
    try:
        # one poll each, all at once: with no WAL history of the primary yet, a replica's lag
        # comes from its own view (tierwatch_pg_replica_lag_from_primary 0)
        snapshots = list(await asyncio.gather(*(p.poll() for p in pollers)))
    finally:
        await asyncio.gather(*(p.close() for p in pollers), return_exceptions=True)
    primaries = ClusterPrimaries()
    primaries.expect(w.id for w in watched)
    for snap in snapshots:
        primaries.observe(snap)
    daemon_series = [*patroni.metrics(), *primaries.metrics()]
    sys.stdout.write(render(snapshots, daemon_series).decode())
    sys.stdout.flush()
    for snap in snapshots:
        state = "up" if snap.up else f"DOWN: {snap.error}"
        print(f"{snap.target} ({snap.target.kind}): {state} [{snap.duration * 1000:.0f} ms]",
              file=sys.stderr)
    return EXIT_OK if all(s.up for s in snapshots) else EXIT_DOWN


if __name__ == "__main__":
    raise SystemExit(main())

"""Re-capture tests/data/pgbouncer_<version>_<state>.json: the rows of every SHOW command
tierwatch sends, as the stats user, from a PgBouncer in a topology of its own.

    .venv/bin/python -m tests.data.pgbouncer_capture 1.24    # Debian 13's, tests/trixieservers.py
    .venv/bin/python -m tests.data.pgbouncer_capture 1.18    # Debian 12's /usr/sbin/pgbouncer

States: `fresh` right after the start, `idle` after one client, `saturated` with both servers
of the `app` pool (default_pool_size 2) held and three clients queued, and `limited` (1.23+,
whose SHOW USERS shows the user settings) after a reload with `max_db_connections=1` on `app`,
a second database `app2` on the same server, and `[users] monitor = pool_size=3
max_user_connections=1`: pool (app, app) holds 1 server with 2 clients queued behind the
database limit, pool (app2, monitor) 1 server with 1 client queued behind the user limit, pool
(app2, app) 1 server and no queue. Numeric cells become JSON numbers; SHOW CONFIG is trimmed to
the keys tierwatch reads and a few neighbours.
"""

from __future__ import annotations

import json
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests import trixieservers
from tests.integration.test_pgbouncer import console, saturated_pool
from tests.support import wait_until
from tests.topology import Topology

COMMANDS = ("SHOW POOLS", "SHOW DATABASES", "SHOW USERS", "SHOW STATS", "SHOW LISTS",
            "SHOW CONFIG")
CONFIG_KEYS = {"default_pool_size", "max_client_conn", "max_db_connections",
               "max_user_connections", "min_pool_size", "pool_mode", "reserve_pool_size",
               "stats_period"}
OUT = Path(__file__).parent


def cell(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def snapshot(topo: Topology, source: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"source": source}
    for command in COMMANDS:
        rows = [{k: cell(v) for k, v in row.items()} for row in console(topo, command)]
        if command == "SHOW CONFIG":
            rows = [row for row in rows if row["key"] in CONFIG_KEYS]
        doc[command] = rows
    return doc


def waiting(topo: Topology, expected: dict[tuple[str, str], int]) -> bool:
    pools = {(r["database"], r["user"]): r["cl_waiting"] for r in console(topo, "SHOW POOLS")}
    return all(pools.get(pool) == count for pool, count in expected.items())


def reload_limited(topo: Topology) -> None:
    assert topo.workdir is not None
    ini = topo.workdir / "pgbouncer" / "pgbouncer.ini"
    text = ini.read_text()
    app_line = next(line for line in text.splitlines() if line.startswith("app = "))
    ini.write_text(text.replace(app_line, f"{app_line} max_db_connections=1\n"
                                          f"{app_line.replace('app = ', 'app2 = ', 1)}")
                   + "[users]\nmonitor = pool_size=3 max_user_connections=1\n")
    topo.pgbouncer.kill(signal.SIGHUP)
    wait_until(lambda: any(r["name"] == "app2" for r in console(topo, "SHOW DATABASES")), 5,
               "PgBouncer reloaded with app2")
    # limits bind only when PgBouncer opens a server: close the ones the earlier states left
    topo.psql(topo.primary, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE usename = 'app'")
    wait_until(lambda: all(r["current_connections"] == 0 for r in console(topo, "SHOW DATABASES")
                           if r["name"] == "app"), 5, "no server connection left")


def limited(topo: Topology, name: str) -> dict[str, Any]:
    reload_limited(topo)
    base = topo.app_dsn_via_pgbouncer()
    monitor = (f"postgresql://monitor:{topo.monitor_password}@{topo.pgbouncer.host}:"
               f"{topo.pgbouncer.port}/app2")
    with (saturated_pool(topo, waiting=2, holding=1),
          saturated_pool(topo, waiting=1, holding=1, dsn=monitor),
          saturated_pool(topo, waiting=0, holding=1, dsn=base[:-len("/app")] + "/app2")):
        wait_until(lambda: waiting(topo, {("app", "app"): 2, ("app2", "monitor"): 1}), 10,
                   "clients queued behind the database and the user limit")
        return snapshot(topo, name)


def main(version: str) -> int:
    command = (trixieservers.command("pgbouncer-1.24") if version == "1.24"
               else ["/usr/sbin/pgbouncer"])
    with Topology(pgbouncer_command=command) as topo:
        (row,) = console(topo, "SHOW VERSION")
        where = f"{row['version']} ({'Debian 13' if version == '1.24' else 'Debian 12'})"
        source = f"{where}, tests/data/pgbouncer_capture.py, state"
        states = {"fresh": snapshot(topo, f"{source} 'fresh'")}
        with saturated_pool(topo, waiting=0, holding=1):
            pass
        states["idle"] = snapshot(topo, f"{source} 'idle'")
        with saturated_pool(topo, waiting=3):
            wait_until(lambda: waiting(topo, {("app", "app"): 3}), 10, "3 clients queued")
            states["saturated"] = snapshot(topo, f"{source} 'saturated'")
        if version != "1.18":
            states["limited"] = limited(topo, f"{source} 'limited'")
    for state, doc in states.items():
        path = OUT / f"pgbouncer_{version}_{state}.json"
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "1.24"))

"""Re-capture tests/data/pg_rows.json: every pg_* query's rows, as the monitor role, from a
running topology (`python -m tests.topology up ...`) in four states: idle, sessions of
several applications, replay paused while the primary writes, and replica stopped.

    .venv/bin/python tests/data/pg_capture.py PRIMARY_PORT REPLICA_PORT PASSWORD_FILE \
        REPLICA_DATA_DIR

Run as root (the replica is stopped and started with pg_ctl as the postgres user).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from exporter.collectors.pg_activity import ACTIVITY_SQL
from exporter.collectors.pg_database import DATABASE_SQL
from exporter.collectors.pg_replica import REPLICA_SQL
from exporter.collectors.pg_replication import REPLICATION_SQL
from exporter.collectors.pg_slots import SLOTS_SQL
from exporter.collectors.pg_status import STATUS_SQL
from exporter.collectors.pg_timeline import TIMELINE_SQL

QUERIES = {"status": STATUS_SQL, "activity": ACTIVITY_SQL, "database": DATABASE_SQL,
           "replication": REPLICATION_SQL, "slots": SLOTS_SQL, "replica": REPLICA_SQL,
           "timeline": TIMELINE_SQL}
PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"
OUT = Path(__file__).parent / "pg_rows.json"


def main() -> None:
    primary, replica, password = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]).read_text()
    data_dir = sys.argv[4]

    def grab(port: int) -> dict[str, Any]:
        with psycopg.connect(host="127.0.0.1", port=port, user="monitor", password=password,
                             dbname="postgres", autocommit=True, row_factory=dict_row) as conn:
            return {key: conn.execute(q).fetchall() for key, q in QUERIES.items()}  # type: ignore[arg-type]

    def superuser(port: int, db: str = "postgres", **kw: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname=db, **kw)

    def pg_ctl(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", PG_CTL, *args, "-D", data_dir, "-w"],
                       cwd=data_dir, check=True, capture_output=True)

    out: dict[str, Any] = {}
    with superuser(primary, autocommit=True) as conn:
        out["version"] = conn.execute("SHOW server_version_num").fetchone()[0]  # type: ignore[index]
    time.sleep(12)  # pg_stat_replication's lag columns turn NULL ~10 s after the last write
    out["idle"] = {"primary": grab(primary), "replica": grab(replica)}

    held = []
    for app, n in (("billing", 3), ("web", 2), ("", 1)):
        for _ in range(n):
            conn = superuser(primary, "app", application_name=app)
            conn.execute("SELECT 1")  # not committed: idle in transaction
            held.append(conn)
    time.sleep(1.2)
    out["busy_activity"] = {"primary": grab(primary)["activity"]}
    for conn in held:
        conn.close()

    stop = threading.Event()

    def writer() -> None:
        with superuser(primary, "app", autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO items(payload) "
                             "SELECT repeat('x', 200) FROM generate_series(1, 20)")
                time.sleep(0.1)

    thread = threading.Thread(target=writer)
    thread.start()
    with superuser(replica, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        time.sleep(4)
        out["paused"] = {"primary": grab(primary), "replica": grab(replica)}
        conn.execute("SELECT pg_wal_replay_resume()")
    stop.set()
    thread.join()

    pg_ctl("stop", "-m", "fast")
    with superuser(primary, "app", autocommit=True) as conn:
        for _ in range(20):
            conn.execute("INSERT INTO items(payload) "
                         "SELECT repeat('x', 200) FROM generate_series(1, 50)")
    time.sleep(0.5)
    out["replica_stopped"] = {"primary": grab(primary)}
    pg_ctl("start", "-l", str(Path(data_dir).parent / "logs" / "replica.log"))

    text = json.dumps(out, indent=1, default=str)
    # the replica's conninfo names the temp dir of the topology: make it stable
    text = text.replace(str(Path(data_dir)) + "/", "/var/lib/postgresql/replica/")
    OUT.write_text(text + "\n")


if __name__ == "__main__":
    main()

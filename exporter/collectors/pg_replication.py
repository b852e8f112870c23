"""pg_stat_replication on a primary: each replica's lag per stage and the streaming count."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from exporter import catalogue as c
from exporter.collectors.base import Output, Row
from exporter.model import PollContext, Role

# Byte lag is computed against the same pg_current_wal_lsn() the status query reads. On a
# replica (cascading walsenders) the current LSN is undefined: NULL there, never an error.
# The slot is joined by its walsender pid, which names the replica more reliably than an
# application_name two replicas may share.
REPLICATION_SQL = """SELECT r.pid, r.application_name, r.state, s.slot_name,
  pg_wal_lsn_diff(cur.lsn, r.sent_lsn)::float8 AS sent_lag_bytes,
  pg_wal_lsn_diff(cur.lsn, r.write_lsn)::float8 AS write_lag_bytes,
  pg_wal_lsn_diff(cur.lsn, r.flush_lsn)::float8 AS flush_lag_bytes,
  pg_wal_lsn_diff(cur.lsn, r.replay_lsn)::float8 AS replay_lag_bytes,
  extract(epoch FROM r.write_lag)::float8 AS write_lag_seconds,
  extract(epoch FROM r.flush_lag)::float8 AS flush_lag_seconds,
  extract(epoch FROM r.replay_lag)::float8 AS replay_lag_seconds
FROM pg_stat_replication r
CROSS JOIN (SELECT CASE WHEN pg_is_in_recovery() THEN NULL
                        ELSE pg_current_wal_lsn() END AS lsn) cur
LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid
ORDER BY r.pid"""

# stage -> (byte lag column, lag seconds column or None). The lag columns are NULL once the
# replica has caught up and the primary is idle (about 10 s after the last write), so a
# stage reads 0 s exactly when its byte lag is 0; with bytes behind and no measurement
# yet, the seconds series is left out rather than invented.
STAGES = (
    ("sent", "sent_lag_bytes", None),
    ("write", "write_lag_bytes", "write_lag_seconds"),
    ("flush", "flush_lag_bytes", "flush_lag_seconds"),
    ("replay", "replay_lag_bytes", "replay_lag_seconds"),
)

# facts a replica's pg_replica collector reports about its own WAL receiver
FACT_SLOT = "wal_receiver_slot"
FACT_APPLICATION = "wal_receiver_application_name"


def _unique_owner(
    facts: Mapping[str, Mapping[str, Any]], key: str, value: object
) -> str | None:
    owners = [target for target, f in facts.items() if value and f.get(key) == value]
    return owners[0] if len(owners) == 1 else None


def replica_names(rows: Sequence[Row], ctx: PollContext) -> list[str]:
    """The `replica` label of each row: the configured target whose WAL receiver uses the
    row's slot or application_name (whichever identifies exactly one), else the
    application_name. Rows that would share a label (two walsenders for one name during a
    reconnect, or replicas all called "walreceiver") keep it for the first streaming row;
    the others get "<name>#<pid>" so no series is ever duplicated."""
    cluster = ctx.cluster
    facts: dict[str, Mapping[str, Any]] = {}
    if cluster is not None:
        facts = {
            target: f for target, f in cluster.facts.items()
            if target != ctx.target.target and target in cluster.postgres_targets
        }
    names = []
    for row in rows:
        app = str(row.get("application_name") or "")
        name = (
            _unique_owner(facts, FACT_SLOT, row.get("slot_name"))
            or _unique_owner(facts, FACT_APPLICATION, app)
            or app
        )
        names.append(name)
    order = sorted(range(len(rows)), key=lambda i: rows[i].get("state") != "streaming")
    taken: set[str] = set()
    for i in order:
        if names[i] in taken:
            names[i] = f"{names[i]}#{rows[i].get('pid')}"
        taken.add(names[i])
    return names


class PgReplication:
    name: ClassVar[str] = "pg_replication"
    roles: ClassVar[frozenset[Role]] = frozenset({Role.PRIMARY})

    def queries(self, ctx: PollContext) -> Sequence[str]:
        return (REPLICATION_SQL,)

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output:
        rows = results[REPLICATION_SQL]
        out: Output = [
            c.PG_REPLICAS_STREAMING(sum(1 for r in rows if r["state"] == "streaming")),
        ]
        for row, replica in zip(rows, replica_names(rows, ctx), strict=True):
            for stage, bytes_column, seconds_column in STAGES:
                lag_bytes = row[bytes_column]
                if lag_bytes is None:
                    continue  # e.g. a walsender still in startup or backup
                lag_bytes = max(0.0, float(lag_bytes))
                out.append(c.PG_REPLICATION_LAG_BYTES(lag_bytes, replica, stage))
                if seconds_column is None:
                    continue
                seconds = row[seconds_column]
                if lag_bytes == 0:
                    seconds = 0.0
                if seconds is not None:
                    out.append(c.PG_REPLICATION_LAG_SECONDS(seconds, replica, stage))
        return out

"""pg_stat_replication on a primary: each replica's lag per stage and the streaming count."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from exporter import catalogue as c
from exporter.collectors.base import Column, Output, Row
from exporter.model import PollContext, Role
from exporter.replication import ReceiverIdentity

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

# The lag columns are NULL once the replica has caught up and the primary is idle (about
# 10 s after the last write), so a stage reads 0 s exactly when its byte lag is 0; with bytes
# behind and no measurement yet, the seconds series is left out rather than invented.
STAGES = ("sent", "write", "flush", "replay")
LAG_BYTES = {stage: Column.of(f"{stage}_lag_bytes", c.PG_REPLICATION_LAG_BYTES, 1.0, stage)
             for stage in STAGES}
LAG_SECONDS = {stage: Column.of(f"{stage}_lag_seconds", c.PG_REPLICATION_LAG_SECONDS, 1.0, stage)
               for stage in STAGES if stage != "sent"}  # pg_stat_replication has no sent_lag


def _unique_owner(receivers: Mapping[str, ReceiverIdentity], value: str | None,
                  slot: bool) -> str | None:
    if not value:
        return None
    owners = [target for target, who in receivers.items()
              if (who.slot if slot else who.application_name) == value]
    return owners[0] if len(owners) == 1 else None


def replica_names(rows: Sequence[Row], ctx: PollContext) -> list[str]:
    """The `replica` label of each row: the configured target whose WAL receiver uses the
    row's slot or application_name (whichever identifies exactly one), else the
    application_name. Rows that would share a label (two walsenders for one name during a
    reconnect, or replicas all called "walreceiver") keep it for the first streaming row;
    the others get "<name>#<pid>" so no series is ever duplicated."""
    view = ctx.replication
    receivers: dict[str, ReceiverIdentity] = {}
    if view is not None:
        receivers = {target: who for target, who in view.receivers.items()
                     if target != ctx.target.target}
    names = []
    for row in rows:
        app = str(row.get("application_name") or "")
        slot = row.get("slot_name")
        name = (
            _unique_owner(receivers, str(slot) if slot else None, slot=True)
            or _unique_owner(receivers, app, slot=False)
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


def stage_lags(row: Row, replica: str) -> Output:
    out: Output = []
    for stage in STAGES:
        lag_bytes = LAG_BYTES[stage].read(row)
        if lag_bytes is None:
            continue  # e.g. a walsender still in startup or backup
        lag_bytes = max(0.0, lag_bytes)
        out.append(c.PG_REPLICATION_LAG_BYTES(lag_bytes, replica, stage))
        seconds_column = LAG_SECONDS.get(stage)
        if seconds_column is None:
            continue
        seconds = 0.0 if lag_bytes == 0 else seconds_column.read(row)
        if seconds is not None:
            out.append(c.PG_REPLICATION_LAG_SECONDS(seconds, replica, stage))
    return out


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
            out.extend(stage_lags(row, replica))
        return out

"""pg_replication_slots: WAL each slot holds back, whether it is in use, how close to lost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from exporter import catalogue as c
from exporter.collectors.base import ALL_ROLES, Output, Row
from exporter.model import PollContext, Role

# Retention is measured from restart_lsn (the oldest WAL the slot still needs) to the
# current position; on a replica, which may hold slots for cascading standbys or (17+)
# synced failover slots, to its replay position, since pg_current_wal_lsn() raises there.
# A physical slot's restart_lsn follows the standby's flush, not its replay: retention is
# blind to replay lag.
_SLOTS = """SELECT slot_name, slot_type, active, {wal_status} AS wal_status,
  pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                       ELSE pg_current_wal_lsn() END, restart_lsn)::float8 AS retained_bytes,
  {safe_wal_size} AS safe_wal_size
FROM pg_replication_slots
ORDER BY slot_name"""
SLOTS_SQL = _SLOTS.format(wal_status="wal_status", safe_wal_size="safe_wal_size::float8")
# wal_status and safe_wal_size arrived in PostgreSQL 13 (13-17 all have them); older
# servers get NULLs, i.e. no wal_status and no safe_wal_size series
SLOTS_SQL_PRE13 = _SLOTS.format(wal_status="NULL::text", safe_wal_size="NULL::float8")


def slots_sql(server_version: int) -> str:
    return SLOTS_SQL if server_version == 0 or server_version >= 130000 else SLOTS_SQL_PRE13


# every wal_status the documentation lists; exported 1/0 so an alert can test == 1
WAL_STATUSES = ("reserved", "extended", "unreserved", "lost")


class PgSlots:
    name: ClassVar[str] = "pg_slots"
    roles: ClassVar[frozenset[Role]] = ALL_ROLES

    def queries(self, ctx: PollContext) -> Sequence[str]:
        return (slots_sql(ctx.server_version),)

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output:
        out: Output = []
        for row in results[slots_sql(ctx.server_version)]:
            slot, slot_type = str(row["slot_name"]), str(row["slot_type"])
            out.append(c.PG_SLOT_ACTIVE(1 if row["active"] else 0, slot, slot_type))
            # NULL restart_lsn: a slot that never reserved WAL, or a lost one (no retention)
            if row["retained_bytes"] is not None:
                retained = max(0.0, float(row["retained_bytes"]))
                out.append(c.PG_SLOT_RETAINED_BYTES(retained, slot, slot_type))
            # NULL safe_wal_size: max_slot_wal_keep_size = -1, no limit to approach
            if row["safe_wal_size"] is not None:
                out.append(c.PG_SLOT_SAFE_WAL_SIZE(row["safe_wal_size"], slot, slot_type))
            status = row["wal_status"]
            if status is not None:
                for known in WAL_STATUSES:
                    out.append(c.PG_SLOT_WAL_STATUS(
                        1 if status == known else 0, slot, slot_type, known))
                if status not in WAL_STATUSES:  # a status a newer server may add
                    out.append(c.PG_SLOT_WAL_STATUS(1, slot, slot_type, str(status)))
        return out

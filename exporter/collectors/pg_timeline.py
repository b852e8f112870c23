"""The server's current timeline: it grows by one at every promotion (failover or switchover).

What pg_monitor may read, checked on PostgreSQL 15-18: on a primary the timeline is the
first eight hex digits of the WAL file being written, new at the moment of the promotion
(pg_control_checkpoint()'s timeline waits for the next checkpoint, which after a promotion
is a spread one on 15-17). On a replica it is the WAL receiver's received_tli, which follows
the new primary's timeline once it streams from it; without a WAL receiver (archive
recovery, upstream down) the last restartpoint's timeline from pg_control_checkpoint().
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from exporter import catalogue as c
from exporter.collectors.base import ALL_ROLES, Output, Row, number
from exporter.model import PollContext, Role

# pg_walfile_name() raises during recovery: guarded by the role. bigint: a timeline is a
# 32-bit unsigned number.
TIMELINE_SQL = """SELECT CASE WHEN pg_is_in_recovery()
    THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),
                  (SELECT timeline_id FROM pg_control_checkpoint()))::bigint
    ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint
  END AS timeline_id"""


class PgTimeline:
    name: ClassVar[str] = "pg_timeline"
    roles: ClassVar[frozenset[Role]] = ALL_ROLES

    def queries(self, ctx: PollContext) -> Sequence[str]:
        return (TIMELINE_SQL,)

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output:
        rows = results[TIMELINE_SQL]
        timeline = number(rows[0]["timeline_id"]) if rows else None
        return [c.PG_TIMELINE_ID(timeline)] if timeline is not None and timeline > 0 else []

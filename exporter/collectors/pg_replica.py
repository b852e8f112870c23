"""The replica's own view: WAL receiver, replay pause, and lag dated by the primary's WAL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import psycopg
import psycopg.conninfo

from exporter import catalogue as c
from exporter.collectors.base import Output, Row
from exporter.model import PollContext, Role
from exporter.replication import ReceivedPosition, ReceiverIdentity, WalPoint, replay_delay

# pg_stat_wal_receiver has one row while a WAL receiver runs and none otherwise, hence the
# outer join. Its conninfo is shown (password obfuscated) to pg_read_all_stats, which
# pg_monitor includes. pg_is_wal_replay_paused() raises on a primary: guarded. Since 14 it
# is true from pg_wal_replay_pause() on ("pause requested" counts: replay will stop).
REPLICA_SQL = """SELECT pg_is_in_recovery() AS in_recovery,
  pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::float8 AS receive_lsn,
  pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::float8 AS replay_lsn,
  CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END AS replay_paused,
  extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
    AS replay_timestamp_age,
  w.status AS receiver_status, w.slot_name AS receiver_slot, w.conninfo AS receiver_conninfo,
  current_setting('primary_slot_name', true) AS primary_slot_name,
  current_setting('cluster_name', true) AS cluster_name
FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver w ON true"""

# The primary's position is trusted while its last poll is at most this many of its poll
# intervals old (and at least this many seconds); beyond that the replica's own view is used.
STALE_INTERVALS = 3
MIN_INTERVAL = 1.0


def conninfo_value(conninfo: str, key: str) -> str | None:
    """The value of `key` in a libpq connection string (key=value or URI), parsed by libpq."""
    try:
        value = psycopg.conninfo.conninfo_to_dict(conninfo).get(key)
    except psycopg.Error:
        return None  # PostgreSQL showed something libpq cannot parse: no identity from it
    return str(value) if value is not None else None


def receiver_application_name(row: Row) -> str | None:
    """The application_name the primary shows for this replica's WAL receiver."""
    conninfo = row.get("receiver_conninfo")
    if conninfo:
        for key in ("application_name", "fallback_application_name"):
            value = conninfo_value(str(conninfo), key)
            if value:
                return value
    # a walreceiver without one falls back to cluster_name, else "walreceiver"
    return str(row.get("cluster_name") or "") or None


def fresh_primary_wal(ctx: PollContext) -> tuple[WalPoint, ...]:
    """The cluster primary's WAL history if it is current, else () (replica view only)."""
    cluster = ctx.replication
    if cluster is None or not cluster.primary_wal or cluster.primary_target == ctx.target.target:
        return ()
    interval = cluster.primary_interval
    if interval is None and ctx.previous_time is not None:
        interval = ctx.now - ctx.previous_time
    limit = STALE_INTERVALS * max(interval or 0.0, MIN_INTERVAL)
    if ctx.now - cluster.primary_wal[-1].time > limit:
        return ()
    return cluster.primary_wal


def own_view_lag(row: Row) -> tuple[float | None, float | None]:
    """(seconds, bytes) from the replica alone, for when the primary's position is unknown.

    Received but not replayed: the age of the last replayed commit. Everything received
    replayed: 0 while the WAL receiver streams (the best the replica can know), else the
    age of the last replayed commit (the link is down; reads grow stale at least that
    fast, though an idle primary makes it over-report). None where PostgreSQL has no
    commit timestamp yet (nothing replayed since start).
    """
    receive, replay = row["receive_lsn"], row["replay_lsn"]
    age = row["replay_timestamp_age"]
    age = max(0.0, float(age)) if age is not None else None
    lag_bytes = max(0.0, float(receive) - float(replay)) if receive is not None else None
    if lag_bytes:
        return age, lag_bytes
    if row["receiver_status"] == "streaming":
        return 0.0, lag_bytes
    return age, lag_bytes


class PgReplica:
    name: ClassVar[str] = "pg_replica"
    roles: ClassVar[frozenset[Role]] = frozenset({Role.REPLICA})

    def queries(self, ctx: PollContext) -> Sequence[str]:
        return (REPLICA_SQL,)

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output:
        row = results[REPLICA_SQL][0]
        if not row["in_recovery"]:
            return []  # promoted between the status query and this one: not a replica
        out: Output = [
            c.PG_WAL_RECEIVER_UP(1 if row["receiver_status"] == "streaming" else 0),
            c.PG_REPLAY_PAUSED(1 if row["replay_paused"] else 0),
        ]
        # who this replica is to its primary: pg_replication matches walsenders by these
        slot = row.get("receiver_slot") or row.get("primary_slot_name")
        app = receiver_application_name(row)
        if slot or app:
            out.append(ReceiverIdentity(str(slot) if slot else None, app))
        if row["receiver_status"] == "streaming" and row["receive_lsn"] is not None:
            out.append(ReceivedPosition(float(row["receive_lsn"])))
        out.extend(self._lag(row, ctx))
        return out

    def _lag(self, row: Row, ctx: PollContext) -> Output:
        replay = row["replay_lsn"]
        history = fresh_primary_wal(ctx) if replay is not None else ()
        if history:
            replay = float(replay)
            # the primary has written at least up to what the replica received, so what it
            # received beyond the primary's last poll is one more sample, taken now
            receive = row["receive_lsn"]
            if receive is not None and float(receive) > history[-1].lsn \
                    and ctx.now > history[-1].time:
                history = (*history, WalPoint(ctx.now, float(receive)))
            seconds: float | None = replay_delay(history, replay, ctx.now)
            lag_bytes: float | None = max(0.0, history[-1].lsn - replay)
        else:
            seconds, lag_bytes = own_view_lag(row)
        out: Output = [c.PG_REPLICA_LAG_FROM_PRIMARY(1 if history else 0)]
        if seconds is not None:
            out.append(c.PG_REPLICA_LAG_SECONDS(seconds))
        if lag_bytes is not None:
            out.append(c.PG_REPLICA_LAG_BYTES(lag_bytes))
        return out

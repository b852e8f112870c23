"""The collectors of each kind of target, listed explicitly (no discovery by name)."""

from __future__ import annotations

from exporter.collectors.base import InfoCollector, SqlCollector
from exporter.collectors.pg_activity import PgActivity
from exporter.collectors.pg_database import PgDatabase
from exporter.collectors.pg_replica import PgReplica
from exporter.collectors.pg_replication import PgReplication
from exporter.collectors.pg_slots import PgSlots
from exporter.collectors.pg_status import PgStatus
from exporter.collectors.pg_timeline import PgTimeline
from exporter.collectors.pgbouncer_lists import PgbouncerLists
from exporter.collectors.pgbouncer_pools import PgbouncerPools
from exporter.collectors.pgbouncer_stats import PgbouncerStats
from exporter.collectors.redis_info import RedisInfo

POSTGRES_COLLECTORS: tuple[SqlCollector, ...] = (
    PgStatus(), PgActivity(), PgDatabase(), PgReplication(), PgSlots(), PgReplica(),
    PgTimeline(),
)
PGBOUNCER_COLLECTORS: tuple[SqlCollector, ...] = (
    PgbouncerPools(), PgbouncerStats(), PgbouncerLists())
REDIS_COLLECTORS: tuple[InfoCollector, ...] = (RedisInfo(),)

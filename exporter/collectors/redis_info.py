"""Redis INFO (default sections, one call per poll): cache, memory, clients, keyspace, replication.

Works for Redis 6.2 through 7.4 and Valkey: a field an older server lacks is skipped, a field
a newer one adds is ignored. Valkey reports `redis_version` too (frozen at 7.2.4) plus its own
`valkey_version`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from exporter import catalogue as c
from exporter.collectors.base import Column, Output, map_columns, number
from exporter.model import PollContext, find
from exporter.replication import RedisRunId

# INFO field -> family
GAUGES = (
    Column.of("used_memory", c.REDIS_MEMORY_USED),
    Column.of("maxmemory", c.REDIS_MEMORY_MAX),  # 0 = no limit
    Column.of("used_memory_rss", c.REDIS_MEMORY_RSS),
    Column.of("mem_fragmentation_ratio", c.REDIS_FRAGMENTATION),
    Column.of("connected_clients", c.REDIS_CLIENTS),
    # In INFO clients since Redis 6.2; for older servers the source asks CONFIG GET maxclients
    Column.of("maxclients", c.REDIS_MAX_CLIENTS),
    Column.of("blocked_clients", c.REDIS_BLOCKED_CLIENTS),
    Column.of("uptime_in_seconds", c.REDIS_UPTIME),
    Column.of("connected_slaves", c.REDIS_CONNECTED_REPLICAS),
    Column.of("master_repl_offset", c.REDIS_REPL_OFFSET),
)
COUNTERS = (
    Column.of("keyspace_hits", c.REDIS_HITS),
    Column.of("keyspace_misses", c.REDIS_MISSES),
    Column.of("evicted_keys", c.REDIS_EVICTED),
    Column.of("expired_keys", c.REDIS_EXPIRED),
    Column.of("rejected_connections", c.REDIS_REJECTED),
    Column.of("evicted_clients", c.REDIS_EVICTED_CLIENTS),  # Added in Redis 7.0
    Column.of("total_commands_processed", c.REDIS_COMMANDS),
    Column.of("total_connections_received", c.REDIS_CONNECTIONS_RECEIVED),
)
# replica-only fields (role:slave); master_last_io_seconds_ago is -1 while the link is down
REPLICA_GAUGES = (
    Column.of("slave_repl_offset", c.REDIS_REPLICA_OFFSET),
    Column.of("master_last_io_seconds_ago", c.REDIS_MASTER_LAST_IO),
)
# `dbN:keys=..,expires=..,avg_ttl=..` (7.4 adds subexpiry=, Valkey 9 keys_with_volatile_items=)
KEYSPACE = (
    Column.of("keys", c.REDIS_KEYS),
    Column.of("expires", c.REDIS_KEYS_EXPIRING),
)
REPLICA_ROLES = ("slave", "replica")


def _is_db(key: str) -> bool:
    return key.startswith("db") and key[2:].isdigit()


def _is_replica_line(key: str) -> bool:
    return key.startswith("slave") and key[5:].isdigit()


def restarted(info: Mapping[str, Any], ctx: PollContext) -> bool:
    """True when Redis restarted since the previous successful poll (or we cannot tell)."""
    run_id = info.get("run_id")
    before = find(ctx.previous_observed, RedisRunId)
    if run_id is not None and before is not None and before.run_id != str(run_id):
        return True
    uptime, previous = number(info.get("uptime_in_seconds")), ctx.previous_value(c.REDIS_UPTIME)
    return uptime is not None and previous is not None and uptime < previous


def hit_ratio(info: Mapping[str, Any], ctx: PollContext) -> float | None:
    """Hits / (hits + misses) since the previous poll; None when there is nothing honest to say:
    no previous poll, a restart in between, a counter that went backwards (CONFIG RESETSTAT)
    or no lookup at all."""
    now = (number(info.get("keyspace_hits")), number(info.get("keyspace_misses")))
    before = (ctx.previous_value(c.REDIS_HITS), ctx.previous_value(c.REDIS_MISSES))
    if now[0] is None or now[1] is None or before[0] is None or before[1] is None:
        return None
    if restarted(info, ctx):
        return None
    d_hits, d_misses = now[0] - before[0], now[1] - before[1]
    if d_hits < 0 or d_misses < 0 or d_hits + d_misses == 0:
        return None
    return d_hits / (d_hits + d_misses)


def _server(info: Mapping[str, Any]) -> Output:
    out: Output = []
    policy = info.get("maxmemory_policy")
    if policy is not None:
        out.append(c.REDIS_POLICY(1, str(policy)))
    if "valkey_version" in info:
        out.append(c.REDIS_SERVER_INFO(1, "valkey", str(info["valkey_version"])))
    elif "redis_version" in info:
        out.append(c.REDIS_SERVER_INFO(1, "redis", str(info["redis_version"])))
    if info.get("run_id") is not None:
        out.append(RedisRunId(str(info["run_id"])))
    return out


def _keyspace(info: Mapping[str, Any]) -> Output:
    out: Output = []
    for key, value in info.items():
        if _is_db(key) and isinstance(value, Mapping):
            out.extend(map_columns(value, KEYSPACE, key))
    return out


def _replication(info: Mapping[str, Any]) -> Output:
    role = info.get("role")
    if role is None:
        return []
    out: Output = [c.REDIS_IS_REPLICA(1 if role in REPLICA_ROLES else 0)]
    if role in REPLICA_ROLES:
        out.append(c.REDIS_MASTER_LINK_UP(1 if info.get("master_link_status") == "up" else 0))
        out.extend(m for m in map_columns(info, REPLICA_GAUGES) if m.value >= 0)
        return out
    offset = number(info.get("master_repl_offset"))
    for key, line in info.items():
        # slaveN:ip=..,port=..,state=online,offset=..,lag=..
        if offset is None or not _is_replica_line(key) or not isinstance(line, Mapping):
            continue
        acked = number(line.get("offset"))
        if acked is not None:
            replica = f"{line.get('ip', '?')}:{line.get('port', '?')}"
            out.append(c.REDIS_REPLICA_LAG_BYTES(max(0.0, offset - acked), replica))
    return out


class RedisInfo:
    name: ClassVar[str] = "redis_info"

    def parse(self, info: Mapping[str, Any], ctx: PollContext) -> Output:
        out: Output = [*map_columns(info, GAUGES), *map_columns(info, COUNTERS)]
        ratio = hit_ratio(info, ctx)
        if ratio is not None:
            out.append(c.REDIS_HIT_RATIO(ratio))
        return [*out, *_server(info), *_keyspace(info), *_replication(info)]

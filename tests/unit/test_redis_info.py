"""Redis INFO parsing on recorded outputs: real 6.2, 7.0, 7.4, 8.0, Valkey 8.1 and 9.1, and a
hand-written 7.2 (tests/data/redis_info_SOURCES.md)."""

from __future__ import annotations

from typing import Any

import pytest
from redis._parsers.helpers import parse_info

from exporter import catalogue as c
from exporter.collectors.redis_info import RedisInfo
from exporter.model import Kind, Metric, PollContext, TargetId
from exporter.replication import RedisRunId
from tests.support import REPO

RUN_ID_FACT = "redis_run_id"
DATA = REPO / "tests" / "data"
TARGET = TargetId("main", "cache", Kind.REDIS)
VERSIONS = ("6.2", "7.0", "7.2", "7.4", "8.0", "valkey_8.1", "valkey_9.1")


def info(name: str, **changes: Any) -> dict[str, Any]:
    """The dict redis-py's `info()` returns for a recorded INFO text."""
    parsed = parse_info((DATA / f"redis_info_{name}.txt").read_text())
    parsed.update(changes)
    return parsed


def ctx(previous: dict[Any, float] | None = None, run_id: str | None = None) -> PollContext:
    return PollContext(
        TARGET, now=1000.0,
        previous={(spec.name, ()): v for spec, v in (previous or {}).items()},
        previous_time=985.0 if previous else None,
        previous_observed=(RedisRunId(run_id),) if run_id else ())


def parse(data: dict[str, Any], context: PollContext | None = None
          ) -> tuple[dict[tuple[str, tuple[str, ...]], float], dict[str, Any]]:
    metrics: dict[tuple[str, tuple[str, ...]], float] = {}
    facts: dict[str, Any] = {}
    for item in RedisInfo().parse(data, context or ctx()):
        if isinstance(item, RedisRunId):
            facts[RUN_ID_FACT] = item.run_id
        else:
            assert isinstance(item, Metric)
            key = (item.spec.name, item.labels)
            assert key not in metrics, f"{key} emitted twice"
            metrics[key] = item.value
    return metrics, facts


def one(metrics: dict[tuple[str, tuple[str, ...]], float], spec: c.MetricSpec,
        *labels: str) -> float | None:
    return metrics.get((spec.name, labels))


@pytest.mark.parametrize("version", VERSIONS)
def test_contract_families_on_every_version(version: str) -> None:
    got, facts = parse(info(version))
    assert one(got, c.REDIS_HITS) == 1 and one(got, c.REDIS_MISSES) == 1
    assert one(got, c.REDIS_EVICTED) == 0 and one(got, c.REDIS_EXPIRED) == 0
    assert one(got, c.REDIS_MEMORY_MAX) == 16 * 1024 * 1024
    assert one(got, c.REDIS_MEMORY_USED) > 500_000
    assert one(got, c.REDIS_POLICY, "allkeys-lru") == 1
    assert one(got, c.REDIS_CLIENTS) >= 1
    assert one(got, c.REDIS_REJECTED) == 0
    assert one(got, c.REDIS_KEYS, "db0") == 2 and one(got, c.REDIS_KEYS_EXPIRING, "db0") == 1
    assert one(got, c.REDIS_KEYS, "db3") == 1 and one(got, c.REDIS_KEYS_EXPIRING, "db3") == 0
    assert one(got, c.REDIS_FRAGMENTATION) > 0
    assert one(got, c.REDIS_IS_REPLICA) == 0
    assert one(got, c.REDIS_HIT_RATIO) is None  # no previous poll
    assert len(facts[RUN_ID_FACT]) == 40


def before_6_2() -> dict[str, Any]:
    """INFO as servers before 6.2 give it: no maxclients (added by redis/redis#7979)."""
    data = info("6.2")
    del data["maxclients"]
    return data


def test_version_differences() -> None:
    assert one(parse(before_6_2())[0], c.REDIS_MAX_CLIENTS) is None
    assert one(parse(info("6.2"))[0], c.REDIS_EVICTED_CLIENTS) is None  # added in 7.0
    for version in VERSIONS:
        assert one(parse(info(version))[0], c.REDIS_MAX_CLIENTS) == 10000
    for version in VERSIONS[1:]:
        assert one(parse(info(version))[0], c.REDIS_EVICTED_CLIENTS) == 0
    assert one(parse(info("7.4"))[0], c.REDIS_SERVER_INFO, "redis", "7.4.1") == 1
    assert one(parse(info("8.0"))[0], c.REDIS_SERVER_INFO, "redis", "8.0.2") == 1
    # Valkey still says redis_version:7.2.4; its own version wins
    assert one(parse(info("valkey_8.1"))[0], c.REDIS_SERVER_INFO, "valkey", "8.1.1") == 1
    assert one(parse(info("valkey_9.1"))[0], c.REDIS_SERVER_INFO, "valkey", "9.1.2") == 1


def test_redis_8_keysizes_section_is_not_a_keyspace() -> None:
    # 8.0's default INFO adds `# Keysizes` with db0_distrib_strings_sizes:1=2 lines, which
    # redis-py parses into dicts beside the real db0 entry
    data = info("8.0")
    assert data["db0_distrib_strings_sizes"] == {"1": 2}
    got, _ = parse(data)
    assert {labels for name, labels in got if name == c.REDIS_KEYS.name} == {("db0",), ("db3",)}


def test_maxclients_from_config_get_reaches_the_family() -> None:
    # what the poller merges in for a Redis without maxclients in INFO
    data = {**before_6_2(), "maxclients": "4064"}
    assert one(parse(data)[0], c.REDIS_MAX_CLIENTS) == 4064


def test_hit_ratio_between_polls() -> None:
    data = info("7.0", keyspace_hits=1900, keyspace_misses=200, uptime_in_seconds=100)
    run_id = str(data["run_id"])
    previous = {c.REDIS_HITS: 1000, c.REDIS_MISSES: 100, c.REDIS_UPTIME: 85}
    got = parse(data, ctx(previous, run_id))[0]
    assert one(got, c.REDIS_HIT_RATIO) == pytest.approx(900 / 1000)


def test_hit_ratio_absent_without_lookups() -> None:
    data = info("7.0", keyspace_hits=1000, keyspace_misses=100, uptime_in_seconds=100)
    previous = {c.REDIS_HITS: 1000, c.REDIS_MISSES: 100, c.REDIS_UPTIME: 85}
    assert one(parse(data, ctx(previous, str(data["run_id"])))[0], c.REDIS_HIT_RATIO) is None


def test_hit_ratio_absent_after_restart_with_new_run_id() -> None:
    # the new process already did more lookups than the old one had: only run_id tells
    data = info("7.0", keyspace_hits=5000, keyspace_misses=500, uptime_in_seconds=100)
    previous = {c.REDIS_HITS: 1000, c.REDIS_MISSES: 100, c.REDIS_UPTIME: 85}
    assert one(parse(data, ctx(previous, "0" * 40))[0], c.REDIS_HIT_RATIO) is None


def test_hit_ratio_absent_when_uptime_went_backwards() -> None:
    data = info("7.0", keyspace_hits=5000, keyspace_misses=500, uptime_in_seconds=3)
    previous = {c.REDIS_HITS: 1000, c.REDIS_MISSES: 100, c.REDIS_UPTIME: 85}
    assert one(parse(data, ctx(previous))[0], c.REDIS_HIT_RATIO) is None


def test_hit_ratio_absent_when_counters_went_backwards() -> None:
    # CONFIG RESETSTAT keeps run_id and uptime
    data = info("7.0", keyspace_hits=10, keyspace_misses=500, uptime_in_seconds=100)
    previous = {c.REDIS_HITS: 1000, c.REDIS_MISSES: 100, c.REDIS_UPTIME: 85}
    assert one(parse(data, ctx(previous, str(data["run_id"])))[0], c.REDIS_HIT_RATIO) is None


def test_replication_master_view() -> None:
    got = parse(info("7.0_master"))[0]
    assert one(got, c.REDIS_IS_REPLICA) == 0
    assert one(got, c.REDIS_CONNECTED_REPLICAS) == 1
    assert one(got, c.REDIS_REPL_OFFSET) == 13070
    assert one(got, c.REDIS_REPLICA_LAG_BYTES, "127.0.0.1:16393") == 0


def test_replication_replica_view() -> None:
    got = parse(info("7.0_replica"))[0]
    assert one(got, c.REDIS_IS_REPLICA) == 1
    assert one(got, c.REDIS_MASTER_LINK_UP) == 1
    assert one(got, c.REDIS_REPLICA_OFFSET) == 13070
    assert one(got, c.REDIS_MASTER_LAST_IO) == 2
    down = parse(info("7.0_replica", master_link_status="down",
                      master_last_io_seconds_ago=-1))[0]
    assert one(down, c.REDIS_MASTER_LINK_UP) == 0
    assert one(down, c.REDIS_MASTER_LAST_IO) is None


def test_empty_info_gives_nothing_but_does_not_raise() -> None:
    assert parse({}) == ({}, {})

"""The daemon core against the real topology: up/down per target, snapshot-only scrapes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import psycopg
import pytest
import redis
import yaml

from tests.support import DaemonProcess, Scrape, free_port, http_get, wait_until
from tests.topology import Topology

INTERVAL = 1.0
TARGETS = {"primary": "postgres", "replica-1": "postgres", "bouncer": "pgbouncer",
           "cache": "redis"}


def up_of(scrape: Scrape, target: str) -> float | None:
    return scrape.value("tierwatch_up", cluster="main", target=target)


def last_success(scrape: Scrape, target: str) -> float:
    value = scrape.value("tierwatch_last_poll_success_timestamp_seconds", target=target)
    assert value is not None, target
    return value


def test_every_kind_is_up_with_first_metrics(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    # PgBouncer creates a pool only once a client connects: be that client
    with psycopg.connect(topology.app_dsn_via_pgbouncer(), prepare_threshold=None,
                         autocommit=True) as conn:
        conn.execute("SELECT 1")
    daemon = daemon_factory(topology.tierwatch_config(poll_interval=INTERVAL))
    scrape = wait_until(
        lambda: (s := daemon.scrape()) and all(up_of(s, t) == 1 for t in TARGETS) and s,
        10, "all four targets up")
    for target, kind in TARGETS.items():
        assert scrape.value("tierwatch_up", target=target, kind=kind) == 1
        assert scrape.value("tierwatch_pool_max_connections", target=target) == 2
        used = scrape.value("tierwatch_pool_connections", target=target, state="used")
        idle = scrape.value("tierwatch_pool_connections", target=target, state="idle")
        assert used is not None and idle is not None and used + idle <= 2
    assert scrape.value("tierwatch_pg_in_recovery", target="primary") == 0
    assert scrape.value("tierwatch_pg_in_recovery", target="replica-1") == 1
    assert scrape.value("tierwatch_pg_max_connections", target="primary") == 50
    assert scrape.find("tierwatch_pgbouncer_clients", target="bouncer")
    assert scrape.value("tierwatch_redis_keyspace_hits_total", target="cache") is not None
    assert http_get(daemon.url + "/healthz")[0] == 200
    assert http_get(daemon.url + "/readyz")[0] == 200
    status, body = http_get(daemon.url + "/")
    assert status == 200 and b'href="/metrics"' in body
    assert http_get(daemon.url + "/nope")[0] == 404


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_real_exposition(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    daemon = daemon_factory(topology.tierwatch_config(poll_interval=INTERVAL))
    body = wait_until(lambda: all(up_of(daemon.scrape(), t) == 1 for t in TARGETS)
                      and http_get(daemon.url + "/metrics")[1], 10, "all targets up")
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_down_targets_drop_out_and_come_back_without_restart(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    daemon = daemon_factory(topology.tierwatch_config(poll_interval=INTERVAL))
    wait_until(lambda: all(up_of(daemon.scrape(), t) == 1 for t in TARGETS), 10,
               "all targets up")
    try:
        topology.redis.stop()
        topology.replica.stop()
        stopped_at = time.monotonic()
        scrape = wait_until(
            lambda: (s := daemon.scrape()) and up_of(s, "cache") == 0
            and up_of(s, "replica-1") == 0 and s,
            2 * INTERVAL + 2, "redis and replica reported down")
        # within two intervals (plus the poll deadline of the one in flight)
        assert time.monotonic() - stopped_at <= 2 * INTERVAL + 2
        # their data series are gone, not frozen; the daemon series stay
        assert scrape.find("tierwatch_redis_keyspace_hits_total", target="cache") == []
        assert scrape.find("tierwatch_pg_in_recovery", target="replica-1") == []
        assert scrape.value("tierwatch_poll_errors_total", target="cache") >= 1
        # the healthy targets stay up and keep being polled
        before = {t: last_success(scrape, t) for t in ("primary", "bouncer")}
        wait_until(
            lambda: (s := daemon.scrape()) and all(
                up_of(s, t) == 1 and last_success(s, t) > before[t] for t in before),
            2 * INTERVAL + 1, "primary and bouncer polled again while others are down")
    finally:
        topology.redis.start()
        topology.replica.start()
    topology.wait_replica_streaming()
    wait_until(lambda: all(up_of(daemon.scrape(), t) == 1 for t in TARGETS),
               10, "redis and replica back up without a daemon restart")
    assert daemon.proc is not None and daemon.proc.poll() is None


def _tierwatch_backend_activity(topology: Topology) -> list[tuple[object, ...]]:
    with psycopg.connect(topology.superuser_dsn(topology.primary), autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, query_start, state_change, xact_start FROM pg_stat_activity "
            "WHERE application_name = 'tierwatch' ORDER BY pid").fetchall()


def test_scrapes_never_reach_the_monitored_servers(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    # a long interval: after the first poll nothing but scrapes happens for a minute
    daemon = daemon_factory(topology.tierwatch_config(poll_interval=60))
    wait_until(lambda: all(up_of(daemon.scrape(), t) == 1 for t in TARGETS), 15,
               "first poll of every target")
    client = redis.Redis.from_url(topology.redis_url())
    pg_before = _tierwatch_backend_activity(topology)
    assert pg_before, "the daemon keeps a warm connection to the primary"
    commands_before = int(client.info("stats")["total_commands_processed"])
    connections_before = int(client.info("stats")["total_connections_received"])
    for _ in range(200):
        assert http_get(daemon.url + "/metrics")[0] == 200
    commands_after = int(client.info("stats")["total_commands_processed"])
    connections_after = int(client.info("stats")["total_connections_received"])
    # the only commands in between are this test's own two INFO calls
    assert commands_after - commands_before == 2
    assert connections_after == connections_before
    assert _tierwatch_backend_activity(topology) == pg_before


def _check(config: str, tmp_path) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    path = tmp_path / "check.yaml"
    path.write_text(config)
    return subprocess.run([sys.executable, "-m", "exporter", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_check_exits_0_when_all_up_and_1_when_one_is_down(topology: Topology, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = topology.tierwatch_config(poll_interval=5)
    result = _check(config, tmp_path)
    assert result.returncode == 0, result.stderr
    scrape = Scrape(result.stdout)
    assert all(up_of(scrape, t) == 1 for t in TARGETS)
    assert len(result.stderr.strip().splitlines()) == 4

    doc = yaml.safe_load(config)
    doc["clusters"][0]["redis"].append(
        {"name": "dead-cache", "url": f"redis://127.0.0.1:{free_port()}/0"})
    result = _check(yaml.safe_dump(doc), tmp_path)
    assert result.returncode == 1
    scrape = Scrape(result.stdout)
    assert up_of(scrape, "dead-cache") == 0 and up_of(scrape, "cache") == 1
    assert "dead-cache" in result.stderr and "DOWN" in result.stderr
    assert "Traceback" not in result.stderr

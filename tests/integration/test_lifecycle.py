"""SIGTERM stops promptly and cleanly; SIGHUP reloads, keeping unchanged targets' pools."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import psycopg
import yaml

from tests.support import DaemonProcess, wait_until
from tests.topology import Topology


def tierwatch_backends(topology: Topology) -> set[int]:
    with psycopg.connect(topology.superuser_dsn(topology.primary), autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity "
                            "WHERE application_name = 'tierwatch'").fetchall()
    return {r[0] for r in rows}


def test_sigterm_exits_0_within_5s_even_with_a_frozen_target(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    daemon = daemon_factory(topology.tierwatch_config(poll_interval=1.0))
    wait_until(lambda: daemon.scrape().value("tierwatch_up", target="cache") == 1, 10,
               "redis up")
    before = tierwatch_backends(topology)
    assert before
    topology.redis.kill(signal.SIGSTOP)
    try:
        wait_until(lambda: daemon.scrape().value("tierwatch_up", target="cache") == 0, 10,
                   "frozen redis reported down")
        started = time.monotonic()
        assert daemon.stop(timeout=10) == 0
        elapsed = time.monotonic() - started
    finally:
        topology.redis.kill(signal.SIGCONT)
    assert elapsed < 5, f"SIGTERM took {elapsed:.1f}s"
    assert "Traceback" not in daemon.log_text()
    # every pool was closed: the primary sees none of the daemon's sessions any more
    wait_until(lambda: not (tierwatch_backends(topology) & before), 5,
               "the daemon's PostgreSQL sessions closed")


def test_sighup_reload_adds_removes_and_keeps(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    config = yaml.safe_load(topology.tierwatch_config(poll_interval=1.0))
    daemon = daemon_factory(yaml.safe_dump(config))
    wait_until(lambda: (s := daemon.scrape()).value("tierwatch_up", target="cache") == 1
               and s.value("tierwatch_up", target="primary") == 1, 10, "targets up")
    backends_before = tierwatch_backends(topology)
    polls_before = wait_until(
        lambda: (n := daemon.scrape().value("tierwatch_poll_duration_seconds_count",
                                            target="primary")) is not None and n >= 4 and n,
        10, "four polls of the primary")

    cluster = config["clusters"][0]
    cache = cluster["redis"][0]
    cluster["redis"] = [{**cache, "name": "cache-2"}]  # remove `cache`, add `cache-2`
    daemon.write_config(yaml.safe_dump(config))
    daemon.signal(signal.SIGHUP)

    scrape = wait_until(
        lambda: (s := daemon.scrape()).value("tierwatch_up", target="cache-2") == 1 and s,
        10, "cache-2 added and up")
    assert scrape.find("tierwatch_up", target="cache") == []
    assert scrape.find("tierwatch_redis_keyspace_hits_total", target="cache") == []
    # the unchanged primary kept its statistics (its poll count goes on, not from 1 again)
    # and its pool (the same backend session)
    assert scrape.value("tierwatch_poll_duration_seconds_count", target="primary") >= polls_before
    wait_until(lambda: daemon.scrape().value("tierwatch_poll_duration_seconds_count",
                                             target="primary") > polls_before, 5,
               "the primary polled on after the reload")
    assert tierwatch_backends(topology) & backends_before
    assert "configuration reloaded" in daemon.log_text()


def test_invalid_reload_keeps_the_running_config(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess]
) -> None:
    daemon = daemon_factory(topology.tierwatch_config(poll_interval=1.0))
    wait_until(lambda: daemon.scrape().value("tierwatch_up", target="cache") == 1, 10,
               "redis up")
    daemon.write_config("clusters: [ {name: main, postgres: [ {name: x, dsn: 'mysql://a'}]}]\n")
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in daemon.log_text(), 5, "the refusal logged")
    refusals = [line for line in daemon.log_text().splitlines() if "reload refused" in line]
    assert len(refusals) == 1 and "clusters[0].postgres[0].dsn" in refusals[0]
    before = daemon.scrape().value("tierwatch_last_poll_success_timestamp_seconds",
                                   target="cache")
    assert before is not None
    wait_until(lambda: daemon.scrape().value("tierwatch_last_poll_success_timestamp_seconds",
                                             target="cache") > before, 5,
               "the old configuration still polling")
    assert daemon.proc is not None and daemon.proc.poll() is None

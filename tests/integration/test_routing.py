"""Routing endpoints on the real topology: tierwatch runs as a child process polling every
second; replay is paused, the replica frozen, the settings reloaded (all restored after).

The 10-minute idle no-flap figure is bench/routing_soak.py's; here it is 20 s.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.faultkit import frozen
from tests.routingkit import TOLERANCE, Prober, Writer, http_asker, replay_paused
from tests.support import DaemonProcess, http_get, make_traffic, wait_until
from tests.topology import Topology

pytestmark = pytest.mark.integration

INTERVAL = 1.0
MAX_LAG = 1.0  # routing.max_lag's default, which these checks use
IDLE_SECONDS = 20.0
REPLICA = "/replica/main/replica-1"


def get(daemon: DaemonProcess, path: str) -> tuple[int, Any]:
    status, body = http_get(daemon.url + path)
    text = body.decode()
    return status, json.loads(text) if text.startswith("{") else text


@pytest.fixture(scope="module")
def daemon(topology: Topology) -> Iterator[DaemonProcess]:
    began = time.monotonic()
    d = DaemonProcess(topology.tierwatch_config(poll_interval=INTERVAL)).start()
    try:
        wait_until(lambda: get(d, REPLICA)[0] == 200, 20, f"{REPLICA} healthy")
        yield d
    finally:
        d.stop()
        print(f"\ntest_routing: module ran {time.monotonic() - began:.1f}s")
    assert "Traceback" not in d.log_text(), d.log_tail(60)


def test_roles_on_every_check(daemon: DaemonProcess) -> None:
    expected = {
        ("primary", "primary"): 200, ("primary", "replica-1"): 503,
        ("replica", "primary"): 503, ("replica", "replica-1"): 200,
        ("read-only", "primary"): 200, ("read-only", "replica-1"): 200,
    }
    got = {(check, target): get(daemon, f"/{check}/main/{target}")
           for check, target in expected}
    assert {key: status for key, (status, _) in got.items()} == expected, got
    replica = got[("replica", "replica-1")][1]
    assert replica["role"] == "replica" and replica["up"] and replica["fresh"]
    assert replica["lag_seconds"] is not None and replica["lag_seconds"] <= MAX_LAG
    assert got[("primary", "primary")][1]["role"] == "primary"
    assert get(daemon, "/replica/main/bouncer")[0] == 404
    assert get(daemon, "/replica/main/nobody")[0] == 404
    assert get(daemon, REPLICA + "?max_lag=later")[0] == 400


def test_cluster_report_of_the_live_tier(topology: Topology, daemon: DaemonProcess) -> None:
    make_traffic(topology)  # PgBouncer lists a pool only once a client has used it

    def pooled() -> dict[str, Any] | None:
        report = get(daemon, "/cluster/main")[1]
        rows = {r["target"]: r for r in report["targets"]}
        return report if rows["bouncer"]["clients_waiting"] is not None else None

    report = wait_until(pooled, 10, "PgBouncer's pool in the report")
    assert report["cluster"] == "main" and report["primary"] == "primary"
    rows = {r["target"]: r for r in report["targets"]}
    assert {r["kind"] for r in rows.values()} == {"postgres", "pgbouncer", "redis"}
    assert all(r["up"] and r["fresh"] and r["healthy"] for r in rows.values()), rows
    assert rows["replica-1"]["role"] == "replica" and rows["cache"]["role"] is None
    assert rows["bouncer"]["clients_waiting"] >= 0
    assert rows["bouncer"]["max_pool_saturation"] >= 0
    assert rows["cache"]["memory_used_bytes"] > 0 and rows["cache"]["memory_max_bytes"] > 0
    assert get(daemon, "/cluster/elsewhere")[0] == 404


def test_an_idle_caught_up_replica_never_flaps(daemon: DaemonProcess) -> None:
    with Prober(http_asker(daemon.url + REPLICA), period=0.1) as prober:
        time.sleep(IDLE_SECONDS)
    bad = [a for a in prober.answers if a.status != 200]
    lags = [json.loads(a.body)["lag_seconds"] for a in prober.answers if a.status == 200]
    print(f"\nidle {IDLE_SECONDS:g}s: {len(prober.answers)} checks, {len(bad)} not 200, "
          f"largest lag {max(lags):.3f}s")
    assert len(prober.answers) > IDLE_SECONDS * 5
    assert not bad, bad[:3]


def test_a_stalled_replica_is_dropped_within_the_bound(topology: Topology,
                                                       daemon: DaemonProcess) -> None:
    """Replay paused while the primary writes, right after the idle spell above: the first
    503 comes no later than max_lag + one poll + 1 s after the stall, and not before the
    replica's data was at least max_lag - 0.35 s stale."""
    with Prober(http_asker(daemon.url + REPLICA)) as prober, Writer(topology) as writer:
        with replay_paused(topology, writer) as stall:
            first = prober.wait_for(lambda a: a.status == 503, stall.requested,
                                    MAX_LAG + INTERVAL + 3, "503 from the stalled replica")
            late = first.received - stall.requested
            true_lag = stall.true_lag(first.sent, writer)
            judged = json.loads(first.body)
        resumed = time.time()
        back = prober.wait_for(lambda a: a.status == 200, resumed, 3 * INTERVAL + 2,
                               "200 after resume")
    print(f"\nstall: first 503 {late:.2f}s after the pause (bound {MAX_LAG + INTERVAL + 1:g}s),"
          f" true lag then >= {true_lag:.2f}s, judged {judged['lag_seconds']}s; "
          f"200 again {back.received - resumed:.2f}s after resume")
    assert judged["role"] == "replica" and "over" in judged["reason"], judged
    assert late <= MAX_LAG + INTERVAL + 1, late
    assert true_lag >= MAX_LAG - TOLERANCE, (true_lag, judged)
    early = [a for a in prober.answers if stall.requested <= a.sent < first.sent
             and a.status != 200]
    assert not early, early[:3]


def test_a_frozen_replica_is_never_healthy(topology: Topology, daemon: DaemonProcess) -> None:
    with Prober(http_asker(daemon.url + REPLICA)) as prober:
        with frozen(topology.replica):
            began = time.time()
            first = prober.wait_for(lambda a: a.status == 503, began, 3 * INTERVAL + 2,
                                    "503 from the frozen replica")
            time.sleep(2 * INTERVAL)
            after = [a for a in prober.answers if a.sent > first.received]
            assert after and all(a.status == 503 for a in after), after[:3]
            body = json.loads(after[-1].body)
            assert not body["up"] and body["reason"] == "last poll failed", body
        thawed = time.time()
        prober.wait_for(lambda a: a.status == 200, thawed, 15, "200 after SIGCONT")
    print(f"\nfrozen: 503 after {first.received - began:.2f}s")


def test_a_reload_applies_new_routing_settings(topology: Topology,
                                               daemon: DaemonProcess) -> None:
    original = daemon.config_path.read_text()
    try:
        daemon.write_config(original + "routing:\n  max_staleness: 1ms\n")
        daemon.signal(signal.SIGHUP)
        body = wait_until(lambda: (s := get(daemon, REPLICA))[0] == 503 and s[1], 10,
                          "stale verdict after SIGHUP")
        assert "old, over 1ms" in body["reason"] and not body["fresh"], body
        assert get(daemon, "/primary/main/primary")[0] == 503
    finally:
        daemon.write_config(original)
        daemon.signal(signal.SIGHUP)
    wait_until(lambda: get(daemon, REPLICA)[0] == 200, 10, "healthy again after SIGHUP")

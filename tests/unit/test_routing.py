"""Routing decisions (exporter/routing.py, exporter/routeapi.py) on hand-built snapshots."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from exporter import catalogue as c
from exporter.config import ConfigError, Routing, load_settings
from exporter.durations import parse_duration, positive_duration
from exporter.model import Kind, Metric, TargetId
from exporter.routeapi import answer, is_routing_path
from exporter.routing import cluster_names, cluster_report, health
from exporter.snapshot import TargetSnapshot

NOW = 1_800_000_000.0
PRIMARY = TargetId("main", "primary", Kind.POSTGRES)
REPLICA = TargetId("main", "replica-1", Kind.POSTGRES)
BOUNCER = TargetId("main", "bouncer", Kind.PGBOUNCER)
CACHE = TargetId("main", "cache", Kind.REDIS)
HEALTH_KEYS = {"cluster", "target", "role", "up", "fresh", "lag_seconds", "lag_bytes",
               "poll_age_seconds", "healthy", "reason"}


def snap(target: TargetId, metrics: Iterable[Metric] = (), *, up: bool = True,
         age: float = 0.5, interval: float = 1.0, last_success: float | None = None
         ) -> TargetSnapshot:
    daemon = [c.UP(1 if up else 0, target.kind.value)]
    if last_success is not None:
        daemon.append(c.LAST_SUCCESS(last_success, target.kind.value))
    return TargetSnapshot(target=target, up=up, polled_at=NOW - age,
                          metrics=tuple(metrics) if up else (), daemon_metrics=tuple(daemon),
                          interval=interval)


def primary(**kw: Any) -> TargetSnapshot:
    return snap(PRIMARY, [c.PG_IN_RECOVERY(0), c.PG_MAX_CONNECTIONS(100)], **kw)


def replica(lag: float | None = 0.1, lag_bytes: float = 0, **kw: Any) -> TargetSnapshot:
    metrics = [c.PG_IN_RECOVERY(1), c.PG_REPLICA_LAG_BYTES(lag_bytes)]
    if lag is not None:
        metrics.append(c.PG_REPLICA_LAG_SECONDS(lag))
    return snap(REPLICA, metrics, **kw)


def judge(s: TargetSnapshot | None, check: str, max_lag: float = 1.0,
          max_staleness: float | None = None, target: TargetId = REPLICA) -> dict[str, Any]:
    return health(s.target if s else target, s, check, max_lag, max_staleness, NOW)  # type: ignore[arg-type]


# --- durations ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("1s", 1.0), ("1.5", 1.5), ("2m", 120.0), (" 3S ", 3.0), ("0", 0.0),
    (".5s", 0.5), ("1h", 3600.0), (2, 2.0), (0.75, 0.75), ("10 ms", 0.01),
])
def test_durations_people_write(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [
    "", "fast", "-1", "-1s", "1e3", "1s2", "nan", "inf", "1d", "1 2", "1.2.3", "ms", True, None,
    [1], float("nan"), float("inf"), -0.5, "9" * 40, "1000000s",
])
def test_not_durations(text: Any) -> None:
    with pytest.raises(ValueError, match="must be a duration"):
        parse_duration(text)


def test_staleness_must_be_above_zero() -> None:
    with pytest.raises(ValueError, match="above zero"):
        positive_duration("0s")


# --- one target ---------------------------------------------------------------------------

def test_a_fresh_primary_is_healthy_on_primary_and_read_only_never_on_replica() -> None:
    for check, healthy in (("primary", True), ("read-only", True), ("replica", False)):
        body = judge(primary(), check)
        assert set(body) == HEALTH_KEYS
        assert body["role"] == "primary" and body["healthy"] is healthy, (check, body)
        assert body["lag_seconds"] is None and body["up"] and body["fresh"]
    assert judge(primary(), "replica")["reason"] == "a primary, not a replica"


def test_a_replica_is_never_healthy_on_primary() -> None:
    body = judge(replica(lag=0), "primary")
    assert body["role"] == "replica" and not body["healthy"]
    assert "not a primary" in body["reason"]
    assert judge(replica(lag=0), "replica")["healthy"]
    assert judge(replica(lag=0), "read-only")["healthy"]


@pytest.mark.parametrize(("lag", "max_lag", "healthy"), [
    (0.0, 1.0, True), (0.999, 1.0, True), (1.0, 1.0, True), (1.001, 1.0, False),
    (30.0, 60.0, True), (0.0, 0.0, True), (0.2, 0.0, False), (0.3, 0.25, False),
])
def test_replica_lag_against_max_lag(lag: float, max_lag: float, healthy: bool) -> None:
    for check in ("replica", "read-only"):
        body = judge(replica(lag=lag, lag_bytes=4096), check, max_lag=max_lag)
        assert body["healthy"] is healthy, body
        assert body["lag_seconds"] == pytest.approx(lag) and body["lag_bytes"] == 4096
    if not healthy:
        assert "over" in body["reason"]


def test_unknown_lag_is_not_healthy() -> None:
    body = judge(replica(lag=None), "replica")
    assert not body["healthy"] and body["reason"] == "replica lag unknown"


@pytest.mark.parametrize("check", ["primary", "replica", "read-only"])
def test_stale_data_is_never_healthy(check: str) -> None:
    s = primary(age=3.5) if check == "primary" else replica(lag=0, age=3.5)
    body = judge(s, check)
    assert body["up"] and not body["fresh"] and not body["healthy"]
    assert body["poll_age_seconds"] == pytest.approx(3.5)
    assert "old, over 3s" in body["reason"]
    # at the limit itself still fresh; an explicit max_staleness replaces 3 x interval
    assert judge(replica(lag=0, age=3.0), "replica")["healthy"]
    assert judge(replica(lag=0, age=3.0), "replica", max_staleness=2.5)["healthy"] is False
    assert judge(replica(lag=0, age=20, interval=10), "replica")["healthy"]


@pytest.mark.parametrize("check", ["primary", "replica", "read-only"])
def test_a_failed_poll_is_never_healthy(check: str) -> None:
    s = snap(REPLICA, up=False, age=0.2, last_success=NOW - 1.2)
    body = judge(s, check)
    assert not body["up"] and not body["healthy"] and body["role"] is None
    assert body["fresh"], "the last success, 1.2 s ago, is within 3 s"
    assert body["reason"] == "last poll failed"
    assert judge(snap(REPLICA, up=False, last_success=None), check)["fresh"] is False


def test_never_polled_target() -> None:
    body = judge(None, "read-only")
    assert body == {"cluster": "main", "target": "replica-1", "role": None, "up": False,
                    "fresh": False, "lag_seconds": None, "lag_bytes": None,
                    "poll_age_seconds": None, "healthy": False, "reason": "not polled yet"}


def test_body_is_json_serialisable() -> None:
    json.dumps(judge(replica(lag=0.123456), "replica"), allow_nan=False)


# --- a cluster ------------------------------------------------------------------------------

def bouncer() -> TargetSnapshot:
    return snap(BOUNCER, [
        c.BOUNCER_CLIENTS(2, "app", "app", "waiting"), c.BOUNCER_CLIENTS(5, "app", "app", "active"),
        c.BOUNCER_CLIENTS(1, "other", "app", "waiting"),
        c.BOUNCER_SATURATION(0.5, "app", "app"), c.BOUNCER_SATURATION(1.25, "other", "app")])


def cache() -> TargetSnapshot:
    return snap(CACHE, [c.REDIS_HIT_RATIO(0.875), c.REDIS_MEMORY_USED(1024),
                        c.REDIS_MEMORY_MAX(16 * 2**20)])


class Store:
    def __init__(self, snapshots: Iterable[TargetSnapshot], expected: Iterable[TargetId]) -> None:
        self.snapshots = {s.target: s for s in snapshots}
        self.expected = frozenset(expected)


ALL = (PRIMARY, REPLICA, BOUNCER, CACHE)


def test_cluster_report_shape_and_extras() -> None:
    store = Store([primary(), replica(lag=0.2), bouncer(), cache()], ALL)
    report = cluster_report(store, "main", 1.0, None, NOW)
    assert report is not None
    assert set(report) == {"cluster", "primary", "targets"}
    assert report["cluster"] == "main" and report["primary"] == "primary"
    rows = {r["target"]: r for r in report["targets"]}
    assert [r["kind"] for r in report["targets"]] == ["postgres", "postgres", "pgbouncer", "redis"]
    for row in report["targets"]:
        assert HEALTH_KEYS | {"kind"} <= set(row)
        assert row["healthy"], row
    assert rows["replica-1"]["role"] == "replica" and rows["replica-1"]["lag_seconds"] == 0.2
    assert rows["bouncer"]["role"] is None
    assert rows["bouncer"]["clients_waiting"] == 3
    assert rows["bouncer"]["max_pool_saturation"] == 1.25
    assert rows["cache"]["hit_ratio"] == 0.875
    assert rows["cache"]["memory_used_bytes"] == 1024
    assert rows["cache"]["memory_max_bytes"] == 16 * 2**20
    json.dumps(report, allow_nan=False)
    # a lagging replica is listed but not healthy at this max_lag
    tight = cluster_report(store, "main", 0.1, None, NOW)
    assert tight is not None and not tight["targets"][1]["healthy"]


def test_cluster_known_before_its_first_poll_and_unknown_clusters() -> None:
    store = Store([], ALL)
    assert cluster_names(store) == ["main"] and cluster_names(frozenset(ALL)) == ["main"]
    report = cluster_report(store, "main", 1.0, None, NOW)
    assert report is not None and report["primary"] is None
    for row in report["targets"]:
        assert not row["up"] and not row["fresh"] and not row["healthy"]
    assert set(report["targets"][2]) >= {"clients_waiting", "max_pool_saturation"}
    assert report["targets"][2]["clients_waiting"] is None
    assert report["targets"][3]["hit_ratio"] is None
    assert cluster_report(store, "other", 1.0, None, NOW) is None
    assert cluster_report({}, "main", 1.0, None, NOW) is None
    assert cluster_report({}, "main", 1.0, None, NOW, expected=ALL) is not None


def test_two_primaries_name_none() -> None:
    second = TargetId("main", "old-replica", Kind.POSTGRES)
    twin = snap(second, [c.PG_IN_RECOVERY(0)])
    report = cluster_report({PRIMARY: primary(), second: twin}, "main", 1.0, None, NOW)
    assert report is not None and report["primary"] is None


def test_stale_services_are_not_healthy() -> None:
    old = snap(CACHE, [c.REDIS_HIT_RATIO(1)], age=10)
    report = cluster_report({CACHE: old}, "main", 1.0, None, NOW)
    assert report is not None
    assert not report["targets"][0]["fresh"] and not report["targets"][0]["healthy"]


# --- requests -------------------------------------------------------------------------------

STORE = Store([primary(), replica(lag=0.4), bouncer(), cache()], ALL)


DEFAULTS = Routing()


def ask(path: str, limits: Routing = DEFAULTS) -> tuple[int, str]:
    assert is_routing_path(path.partition("?")[0]), path
    result = answer(path, STORE, limits, NOW)
    return result.status, result.body.decode()


@pytest.mark.parametrize(("path", "status", "phrase"), [
    ("/primary/main/primary", 200, '"healthy":true'),
    ("/primary/main/replica-1", 503, "not a primary"),
    ("/replica/main/replica-1", 200, '"lag_seconds":0.4'),
    ("/replica/main/replica-1?max_lag=250ms", 503, "over 250ms"),
    ("/replica/main/replica-1?max_lag=0.5&max_lag=0.3", 503, "over 300ms"),
    ("/replica/main/replica-1/", 200, '"role":"replica"'),
    ("/replica/main/primary", 503, "not a replica"),
    ("/read-only/main/primary", 200, '"role":"primary"'),
    ("/read-only/main/replica-1?max_lag=1s&other=x", 200, "within 1s"),
    ("/replica/main/nobody", 404, "unknown target 'nobody' in cluster 'main'"),
    ("/replica/nowhere/replica-1", 404, "unknown cluster 'nowhere'"),
    ("/replica/main/cache", 404, "is a redis target, not PostgreSQL"),
    ("/replica/main", 404, "use /replica/<cluster>/<target>"),
    ("/replica/main/replica-1/extra", 404, "use /replica/"),
    ("/replica//replica-1", 404, "use /replica/"),
    ("/replica/main/replica-1?max_lag=soon", 400, "max_lag: must be a duration"),
    ("/replica/main/replica-1?max_lag=", 400, "max_lag: must be a duration"),
    ("/replica/main/replica-1?max_lag=-1s", 400, "max_lag"),
    ("/cluster/main?max_lag=bad", 400, "max_lag"),
    ("/cluster/main", 200, '"primary":"primary"'),
    ("/cluster/main/", 200, '"cluster":"main"'),
    ("/cluster/nowhere", 404, "unknown cluster 'nowhere'"),
    ("/cluster/", 404, "use /cluster/<cluster>"),
    ("/cluster/main/primary", 404, "use /cluster/<cluster>"),
    ("/replica/%6Dain/replica-1", 200, '"cluster":"main"'),
    ("/replica/ma%2Fin/x", 404, "unknown cluster 'ma/in'"),
    ("/replica/%0a%00/x", 404, "unknown cluster '\\n\\x00'"),
    ("/replica/" + "x" * 300 + "/y", 404, "..."),
])
def test_answers(path: str, status: int, phrase: str) -> None:
    got, body = ask(path)
    assert got == status, body
    assert phrase in body, body
    assert body.endswith("\n") and body.count("\n") == 1, "one line"
    if status in (200, 503):
        json.loads(body)
    assert len(body) < 1000 or status == 200


def test_default_max_lag_comes_from_the_settings() -> None:
    assert ask("/replica/main/replica-1", Routing(max_lag=0.3))[0] == 503
    assert ask("/replica/main/replica-1?max_lag=1s", Routing(max_lag=0.3))[0] == 200
    assert ask("/replica/main/replica-1", Routing(max_staleness=0.1))[0] == 503


@pytest.mark.parametrize("path", ["/metrics", "/", "/replica", "/replicas/main/x", "/cluster"])
def test_other_paths_are_not_routing(path: str) -> None:
    assert not is_routing_path(path)


# --- settings -------------------------------------------------------------------------------

def test_routing_settings_defaults_and_durations(tmp_path: Path) -> None:
    path = tmp_path / "tierwatch.yaml"
    path.write_text("poll_interval: 1\n")
    assert load_settings(path).routing == Routing(max_lag=1.0, max_staleness=None)
    path.write_text("routing:\n  max_lag: 250ms\n  max_staleness: 2m\n  without_auth: true\n")
    routing = load_settings(path).routing
    assert (routing.max_lag, routing.max_staleness, routing.without_auth) == (0.25, 120, True)


@pytest.mark.parametrize(("text", "field"), [
    ("routing:\n  max_lag: soon\n", "routing.max_lag"),
    ("routing:\n  max_lag: -1s\n", "routing.max_lag"),
    ("routing:\n  max_staleness: 0\n", "routing.max_staleness"),
    ("routing:\n  max_staleness: [1]\n", "routing.max_staleness"),
    ("routing:\n  max_lagg: 1s\n", "routing.max_lagg"),
])
def test_bad_routing_settings_name_the_field_and_exit_2(tmp_path: Path, text: str,
                                                        field: str) -> None:
    path = tmp_path / "tierwatch.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: {field}: "):
        load_settings(path)
    result = subprocess.run([sys.executable, "-m", "exporter", "check", "-c", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert f"{field}: " in result.stderr and "Traceback" not in result.stderr

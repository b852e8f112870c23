"""scripts/workload.py without servers: it refuses non-loopback addresses and parses its CLI.

Its traffic itself is exercised by test_panels.py (evictions and waiting clients must show
up in Prometheus before any panel is checked).
"""

from __future__ import annotations

import pytest

from scripts import workload

LOCAL_PG = "postgresql://app:pw@127.0.0.1:6432/app"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def test_loopback_addresses_are_accepted() -> None:
    workload.Endpoints(LOCAL_PG, "postgresql://app@localhost:5433/app", "redis://[::1]:6379/0")
    workload.Endpoints("host=127.0.0.1 port=5432 dbname=app", LOCAL_PG, LOCAL_REDIS)


@pytest.mark.parametrize("endpoints", [
    ("postgresql://app:pw@10.0.0.5:6432/app", LOCAL_PG, LOCAL_REDIS),
    (LOCAL_PG, "host=db.example.com dbname=app", LOCAL_REDIS),
    (LOCAL_PG, "host=127.0.0.1,10.1.1.1 dbname=app", LOCAL_REDIS),
    (LOCAL_PG, LOCAL_PG, "redis://cache.example.com:6379/0"),
])
def test_anything_else_is_refused(endpoints: tuple[str, str, str]) -> None:
    with pytest.raises(workload.WorkloadError, match="loopback"):
        workload.Endpoints(*endpoints)


def test_addresses_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKLOAD_REDIS_URL", raising=False)
    monkeypatch.setenv("WORKLOAD_PGBOUNCER_DSN", LOCAL_PG)
    monkeypatch.setenv("WORKLOAD_REPLICA_DSN", LOCAL_PG)
    with pytest.raises(workload.WorkloadError, match="WORKLOAD_REDIS_URL"):
        workload.Endpoints.from_env()
    monkeypatch.setenv("WORKLOAD_REDIS_URL", LOCAL_REDIS)
    assert workload.Endpoints.from_env().redis_url == LOCAL_REDIS


def test_cli_rejects_unbounded_runs() -> None:
    with pytest.raises(SystemExit):
        workload.main(["--duration", "0"])


def test_bad_addresses_exit_2_without_traceback(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WORKLOAD_PGBOUNCER_DSN", "postgresql://app@192.0.2.1/app")
    monkeypatch.setenv("WORKLOAD_REPLICA_DSN", LOCAL_PG)
    monkeypatch.setenv("WORKLOAD_REDIS_URL", LOCAL_REDIS)
    assert workload.main(["--duration", "1"]) == 2
    assert "not a loopback address" in capsys.readouterr().err

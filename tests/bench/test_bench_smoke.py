"""`bench/run --quick` works: it brings everything up and prints figures (not how fast)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from bench.scale import summarize_profile
from tests.support import REPO

pytestmark = pytest.mark.integration


def test_quick_bench_produces_every_figure(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,  # a first run installs the peers
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for heading in ("## Side by side", "## The HTTP server alone", "## Scale",
                    "## The status page at /", "## Read-routing checks", "Goals (issue 8)"):
        assert heading in out, out

    side = json.loads((tmp_path / "sidebyside-quick.json").read_text())
    rows = {r["name"]: r for r in side["exporters"]}
    tw = rows["tierwatch"]
    for mode in ("seq", "one_core", "c16"):
        assert tw[mode]["rps"] > 0 and math.isfinite(tw[mode]["p99_ms"])
    assert tw["series"] > 0 and tw["peak_rss_mb"] > 0
    assert set(tw["load_per_scrape"]) == {
        "pg_sessions", "pg_xacts", "bouncer_logins", "redis_connections", "redis_commands"}
    # peers are there whenever they could be installed, with ratios from the same run
    for peer in set(rows) - {"tierwatch"}:
        assert rows[peer]["seq"]["rps"] > 0, peer
        assert peer in side["ratios"]
    assert all(r["identical"] for r in side["render"]["rows"])

    http = json.loads((tmp_path / "httpproto-quick.json").read_text())
    assert set(http["summary"]) == {"threaded", "asyncio", "threaded-nagle"}
    assert all(m["rps"] > 0 for modes in http["summary"].values() for m in modes.values())

    scale = json.loads((tmp_path / "scale-quick.json").read_text())
    level = scale["levels"][0]
    assert level["polls"] > 0 and 0 <= level["on_time_rate"] <= 1
    assert level["rss_mb"] > 0 and level["metrics_bytes"] > 0
    assert "samples" in level["profile"] or "error" in level["profile"]

    page = json.loads((tmp_path / "statuspage-quick.json").read_text())
    assert [r["targets"] for r in page["rows"]] == [4, 100]
    assert all(r["http"]["n"] > 0 and r["http"]["bytes"] > 0 for r in page["rows"])

    checks = json.loads((tmp_path / "routing-quick.json").read_text())
    assert checks["targets"] == 100 and checks["worst_http_p99_ms"] > 0
    assert checks["http"]["replica"]["statuses"] == [200], "fresh synthetic data is healthy"

    summary = json.loads((tmp_path / "summary-quick.json").read_text())
    assert summary["goals"], "no goal was judged"


def test_profile_summary_splits_threads_and_ranks_functions() -> None:
    raw = (
        "thread (0x1);run_forever (asyncio/base_events.py:600);"
        "_run_once (asyncio/base_events.py:1900);poll (exporter/poller.py:110) 7\n"
        "thread (0x2);process_request_thread (socketserver.py:691);"
        "do_GET (exporter/httpserver.py:60);body (exporter/snapshot.py:104) 3\n"
    )
    summary = summarize_profile(raw)
    assert summary["samples"] == {"event loop": 7, "http threads": 3}
    assert summary["event loop"]["self"][0] == ("poll (exporter/poller.py)", 7)
    assert summary["http threads"]["self"][0] == ("body (exporter/snapshot.py)", 3)

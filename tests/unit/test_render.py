"""The exposition: merged families, counters, histograms, absent series on a failed poll."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import threading
import time

import pytest

from exporter import catalogue as c
from exporter.model import Kind, TargetId
from exporter.render import render
from exporter.selfmetrics import PollStats
from exporter.snapshot import SnapshotStore, TargetSnapshot
from tests.support import Scrape, in_step

PRIMARY = TargetId("main", "primary", Kind.POSTGRES)
CACHE = TargetId("main", "cache", Kind.REDIS)


def snap(target: TargetId, up: bool, metrics: tuple = ()) -> TargetSnapshot:
    kind = target.kind.value
    stats = PollStats()
    stats.observe(0.004, failed=not up)  # one poll, in the first bucket
    return TargetSnapshot(
        target=target, up=up, polled_at=1.0, metrics=metrics,
        daemon_metrics=(c.UP(1 if up else 0, kind), c.POLL_ERRORS(stats.errors(), kind)),
        poll_duration=stats.duration_samples(),
    )


def test_families_merge_across_targets_and_carry_identity_labels() -> None:
    text = render([
        snap(PRIMARY, True, (c.PG_MAX_CONNECTIONS(100), c.PG_BLOCKS_HIT(7, "app"))),
        snap(CACHE, True, (c.REDIS_HITS(5),)),
    ]).decode()
    scrape = Scrape(text)
    assert text.count("# TYPE tierwatch_up gauge") == 1
    assert scrape.value("tierwatch_up", cluster="main", target="cache", kind="redis") == 1
    assert scrape.value("tierwatch_pg_blocks_hit_total", target="primary", datname="app") == 7
    assert scrape.types["tierwatch_pg_blocks_hit"] == "counter"
    assert scrape.value("tierwatch_poll_duration_seconds_count", target="cache") == 1
    assert scrape.value("tierwatch_poll_duration_seconds_bucket", target="cache", le="+Inf") == 1
    build = scrape.find("tierwatch_build_info")
    assert len(build) == 1 and set(build[0].labels) == {"version", "python_version"}


def test_failed_poll_keeps_only_daemon_series() -> None:
    scrape = Scrape(render([snap(PRIMARY, False)]).decode())
    assert scrape.value("tierwatch_up", target="primary") == 0
    assert scrape.value("tierwatch_poll_errors_total", target="primary") == 1
    assert scrape.find("tierwatch_pg_max_connections") == []


def test_label_values_are_escaped() -> None:
    odd = 'quote" back\\slash\nnewline'
    scrape = Scrape(render([snap(PRIMARY, True, (c.PG_BLOCKS_HIT(1, odd),))]).decode())
    assert scrape.value("tierwatch_pg_blocks_hit_total", datname=odd) == 1


def test_spec_rejects_wrong_label_count() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        c.PG_BLOCKS_HIT(1)


def test_store_renders_once_per_change_and_serves_gzip() -> None:
    calls = []

    def counting(snapshots, daemon):
        calls.append(1)
        return render(snapshots, daemon)

    store = SnapshotStore(counting)
    store.expect([PRIMARY, CACHE])
    assert not store.ready()
    store.publish(snap(PRIMARY, True))
    first = store.body()
    assert store.body() is first and len(calls) == 1
    assert gzip.decompress(store.body(gzipped=True)) == first
    store.publish(snap(CACHE, False))
    assert store.ready()
    assert store.body() != first and len(calls) == 2


def test_concurrent_gzip_scrapers_share_one_compression_per_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # each compression holds ~270 KB of zlib state: sixteen scrapers after a poll must not
    # each run one
    compressions = []
    real_compress = gzip.compress

    def slow_compress(data: bytes, compresslevel: int = 9) -> bytes:
        compressions.append(1)
        time.sleep(0.05)  # long enough for every scraper to arrive while it runs
        return real_compress(data, compresslevel=compresslevel)

    monkeypatch.setattr("exporter.snapshot.gzip.compress", slow_compress)
    store = SnapshotStore(render)
    store.publish(snap(PRIMARY, True))
    bodies: list[bytes] = []

    def scraper(barrier: threading.Barrier) -> None:
        barrier.wait()
        bodies.append(store.body(gzipped=True))

    in_step(16, scraper)
    assert len(compressions) == 1
    assert len(bodies) == 16 and all(b is bodies[0] for b in bodies)
    assert gzip.decompress(bodies[0]) == store.body()


def test_store_drops_snapshots_of_removed_targets() -> None:
    store = SnapshotStore(render)
    store.expect([PRIMARY, CACHE])
    store.publish(snap(PRIMARY, True))
    store.publish(snap(CACHE, True))
    store.expect([CACHE])
    store.publish(snap(PRIMARY, True))  # a late poll of a removed target
    assert set(store.snapshots) == {CACHE}
    assert 'target="primary"' not in store.body().decode()


def test_catalogue_names_are_valid_and_typed() -> None:
    for name, spec in c.CATALOGUE.items():
        assert name.startswith("tierwatch_")
        assert spec.help.endswith("."), name
        assert (spec.type == "counter") == name.endswith("_total")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_check_metrics_is_clean() -> None:
    text = render([
        snap(PRIMARY, True, (c.PG_MAX_CONNECTIONS(100), c.PG_BLOCKS_HIT(7, "app"))),
        snap(CACHE, False),
    ])
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr)

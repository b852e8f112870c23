"""The dashboards' JSON without any server: generated, stable, complete, consistent with alerts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.catalogue import CATALOGUE
from scripts import dashboards as gen

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
PROVISIONING = DASHBOARDS / "provisioning"
UIDS = {"tierwatch-overview", "tierwatch-postgres", "tierwatch-pgbouncer", "tierwatch-redis"}
NUMERIC = {"timeseries", "stat", "gauge", "bargauge"}
VARIABLES = {"datasource", "cluster", "target"}
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}


def _boards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


BOARDS = _boards()


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def test_committed_json_is_what_the_generator_makes(tmp_path: Path) -> None:
    gen.main(["--out", str(tmp_path)])
    made = {p.name: p.read_text() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    assert made.keys() == committed.keys()
    stale = [name for name in made if made[name] != committed[name]]
    assert not stale, f"{stale} differ from the generator: run python scripts/dashboards.py"


def test_uids_are_the_stable_ones() -> None:
    assert {b["uid"] for b in BOARDS.values()} == UIDS
    for name, board in BOARDS.items():
        assert name == f"{board['uid']}.json"
        assert board["id"] is None  # Grafana assigns its own database id on import


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panel_ids_unique_and_layout_in_grid(name: str) -> None:
    board = BOARDS[name]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    cells: set[tuple[int, int]] = set()
    for p in board["panels"]:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, p["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_panel_has_datasource_unit_and_queries(name: str) -> None:
    for panel in _panels(BOARDS[name]):
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], f"{title} has no query"
        assert panel.get("description"), f"{title} has no description"
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], title
            assert target["expr"].strip(), title
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        if panel["type"] in NUMERIC:
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{title} has no unit"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_template_variables_defined_and_used_ones_exist(name: str) -> None:
    board = BOARDS[name]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == VARIABLES
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in ("cluster", "target"):
        assert variables[var]["type"] == "query"
        assert variables[var]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert variables[var]["query"].startswith("label_values(")
    # Where Grafana interpolates: panels (queries, titles, legends) and variable queries.
    text = json.dumps(board["panels"]) + " ".join(str(v["query"]) for v in variables.values())
    used = {m.group(1) or m.group(2) for m in re.finditer(r"\$\{(\w+)\}|\$(\w+)", text)}
    assert used <= set(variables) | BUILTIN_VARIABLES, used - set(variables)


def _alert_threshold_values() -> set[float]:
    values = set(gen.load_thresholds().values())
    # `x > 0` alerts are drawn from the smallest visible value up (see scripts/dashboards.py).
    return values | {gen.WHOLE, gen.PER_SECOND}


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_threshold_steps_are_alert_thresholds(name: str) -> None:
    allowed = _alert_threshold_values()
    for panel in _panels(BOARDS[name]):
        thresholds = panel["fieldConfig"]["defaults"].get("thresholds")
        if not thresholds:
            continue
        base, *rest = thresholds["steps"]
        assert base["value"] is None, panel["title"]
        for step in rest:
            assert step["value"] in allowed, (
                f"{panel['title']}: threshold {step['value']} is no alert threshold")


def test_thresholds_follow_recording_rules() -> None:
    t = gen.load_thresholds()
    assert t["replica_lag_critical_seconds"] == 30
    assert t["replication_slot_retained_bytes"] == 10 * 1024**3
    board = gen.build_all({**t, "replica_lag_critical_seconds": 99.0})["tierwatch-overview.json"]
    lag = next(p for p in board["panels"] if p["title"] == "Replica lag")
    assert [s["value"] for s in lag["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [
        None, t["replica_lag_warning_seconds"], 99]


def test_overview_answers_the_on_call_questions() -> None:
    exprs = " ".join(t["expr"] for _, t in gen.queries(BOARDS["tierwatch-overview.json"]))
    for needle in ("tierwatch_up", "tierwatch:pg_replica_lag_seconds:max",
                   "tierwatch:pgbouncer_pool_saturation:max",
                   "tierwatch:redis_cache_hit_ratio:rate5m", "tierwatch_redis_evicted_keys_total",
                   "tierwatch_pg_max_connections", 'ALERTS{alertstate="firing"',
                   # issue 15: queues, Redis memory, replication and slot state, new sessions
                   'tierwatch_pgbouncer_clients{cluster=~"$cluster", target=~"$target", '
                   'state="waiting"}', "tierwatch_redis_memory_max_bytes",
                   "tierwatch_pg_replicas_streaming", "tierwatch_pg_wal_receiver_up",
                   "tierwatch_pg_replication_slot_active", "tierwatch:pg_sessions:rate2m"):
        assert needle in exprs


def test_overview_has_a_tierwatch_health_row() -> None:
    board = BOARDS["tierwatch-overview.json"]
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert "tierwatch itself" in rows
    exprs = " ".join(t["expr"] for _, t in gen.queries(board))
    for needle in ("tierwatch_poll_duration_seconds_count", "tierwatch_poll_errors_total",
                   "tierwatch_collector_success", "tierwatch_poll_duration_seconds_bucket"):
        assert needle in exprs


_RATE_OF = re.compile(r"\b(?:rate|irate|increase)\((\w+)")


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_rate_only_of_counters(name: str) -> None:
    """rate()/increase() read a drop as a counter reset: applied to a gauge (a WAL position
    after a failover) they draw a spike. Gauges get deriv() or delta()."""
    for panel, target in gen.queries(BOARDS[name]):
        for metric in _RATE_OF.findall(target["expr"]):
            base = re.sub(r"_(bucket|count|sum)$", "", metric)
            kind = CATALOGUE[metric].type if metric in CATALOGUE else CATALOGUE[base].type
            assert kind in ("counter", "histogram"), f"{panel['title']}: rate() of gauge {metric}"


def test_interpolation_like_grafana() -> None:
    expr = 'rate(x{cluster=~"$cluster", target=~"${target}"}[$__rate_interval])'
    got = gen.interpolate(expr, {"cluster": "main", "target": gen.regex_value(["a-1", "b"])})
    assert got == r'rate(x{cluster=~"main", target=~"(a\\-1|b)"}[15s])'
    with pytest.raises(KeyError):
        gen.interpolate("$nope", {})


def test_provisioning_files() -> None:
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "tierwatch.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    sources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"

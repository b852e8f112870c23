"""Proof the dashboards are not empty: every query of every panel returns data from a real stack.

One stack for the module: the topology, tierwatch (poll interval 1 s), the demo workload
(scripts/workload.py) and a real Prometheus scraping tierwatch every second with
alerts/recording_rules.yml and alerts/alerting_rules.yml loaded. The alerting rules are loaded
with every `for:` removed, so alerts fire at their first true evaluation and the overview's
"Firing alerts" query is checked against real ALERTS series within the test's time budget.

The workload first runs with both knobs on (cache pressure, pool flood) until Prometheus has
seen Redis evict and PgBouncer clients wait, then normally. Each query is interpolated the
way Grafana would do it (template variables resolved through their own label_values()
queries, `$__rate_interval` = 15 s) and evaluated through the HTTP API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import dashboards as gen
from scripts.workload import Endpoints, Workload
from tests.promstack import Prometheus, PromQueryError
from tests.support import DaemonProcess, wait_until
from tests.topology import Topology

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RECORDING_RULES = ROOT / "alerts" / "recording_rules.yml"
ALERTING_RULES = ROOT / "alerts" / "alerting_rules.yml"
BOARDS = gen.build_all()
KNOB_PHASE_TIMEOUT = 45.0
QUERY_DEADLINE = 60.0  # for all queries of a dashboard to return data, after the knob phase


@dataclass
class Stack:
    prometheus: Prometheus
    workload: Workload
    started: float  # wall-clock time Prometheus started scraping


def _alerting_rules_without_for(out: Path) -> Path:
    doc = yaml.safe_load(ALERTING_RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not Prometheus.available():
        pytest.skip("prometheus not on PATH (Debian: apt-get install prometheus)")
    rules = _alerting_rules_without_for(tmp_path_factory.mktemp("rules") / "alerting.yml")
    with Topology() as topo:
        daemon = DaemonProcess(topo.tierwatch_config(poll_interval=1.0))
        try:
            daemon.start()
            prom = Prometheus([f"127.0.0.1:{daemon.port}"], scrape_interval="1s",
                              rule_files=[RECORDING_RULES, rules], evaluation_interval="1s")
            started = time.time()
            with prom.start(), Workload(Endpoints.from_topology(topo), rate=60,
                                        seed=6) as workload:
                workload.set_knobs(cache_pressure=True, pool_flood=True)
                try:
                    # A rate, not the counter: what TierwatchRedisEvicting needs is evictions
                    # between two scrapes, and a counter already > 0 at the first scrape
                    # gives a rate of 0 once the knob is off.
                    wait_until(
                        lambda: prom.query("rate(tierwatch_redis_evicted_keys_total[1m]) > 0")
                        and prom.query('max_over_time(tierwatch_pgbouncer_clients'
                                       '{state="waiting"}[5m]) > 0'),
                        KNOB_PHASE_TIMEOUT, "Prometheus seeing Redis evict and clients wait",
                        interval=0.5)
                except AssertionError as exc:
                    raise AssertionError(f"{exc}; workload: {workload.summary()}") from None
                workload.set_knobs(cache_pressure=False, pool_flood=False)
                yield Stack(prom, workload, started)
        finally:
            daemon.stop()


def _variables(prom: Prometheus, board: dict[str, Any]) -> dict[str, str]:
    """Each query variable set to all of its values, in the order Grafana resolves them."""
    values: dict[str, str] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match, label = gen.variable_query(variable)
        found = prom.label_values(label, gen.interpolate(match, values) if match else None)
        assert found, f"variable ${variable['name']} ({variable['query']}) has no values"
        values[variable["name"]] = gen.regex_value(sorted(found))
    return values


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_panel_query_returns_series(stack: Stack, name: str) -> None:
    board = BOARDS[name]
    variables = _variables(stack.prometheus, board)
    pending: dict[str, str] = {}
    for panel, target in gen.queries(board):
        expr = gen.interpolate(target["expr"], variables)
        try:
            stack.prometheus.query(expr)  # a parse error fails now, not at the deadline
        except PromQueryError as exc:
            pytest.fail(f"{name} / {panel['title']} / {target['refId']}: {exc}\n  {expr}")
        pending[f"{panel['title']} / {target['refId']}: {expr}"] = expr

    deadline = time.monotonic() + QUERY_DEADLINE
    while pending and time.monotonic() < deadline:
        for key, expr in list(pending.items()):
            if stack.prometheus.query(expr):
                del pending[key]
        if pending:
            time.sleep(1.0)
    assert not pending, (f"{name}: {len(pending)} queries returned no series within "
                         f"{QUERY_DEADLINE:g}s (workload: {stack.workload.summary()}):\n  "
                         + "\n  ".join(pending))


def _firing_alert_names(stack: Stack, expr: str) -> set[str]:
    """Alert names the panel's query returned at any step since the stack started."""
    series = stack.prometheus.query_range(expr, stack.started, time.time(), step=1)
    return {s["metric"].get("alertname", "") for s in series}


def test_firing_alerts_panel_shows_a_real_alert(stack: Stack) -> None:
    """The knob phase makes Redis evict: TierwatchRedisEvicting fires (for: removed).

    Checked over the stack's lifetime, as the panel shows it over the dashboard's time range:
    the alert resolves by design once the knob is off and the 5 m eviction rate decays.
    """
    [expr] = [target["expr"] for panel, target in gen.queries(BOARDS["tierwatch-overview.json"])
              if panel["title"] == "Firing alerts"]
    names = wait_until(
        lambda: (found := _firing_alert_names(stack, expr))
        and "TierwatchRedisEvicting" in found and found,
        QUERY_DEADLINE, "TierwatchRedisEvicting firing")
    assert all(name.startswith("Tierwatch") for name in names), names

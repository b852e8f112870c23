"""A planned Patroni switchover pages nobody (issue 14, point 4), end to end: a real Patroni
cluster (tests/patroni.py), tierwatch watching it through its `patroni:` block, a real
Prometheus with the shipped rule files and a real Alertmanager with the shipped routing,
its receivers pointed at a webhook sink.

The rules are the shipped files with every `for:` scaled from minutes to 20 s per minute,
so the module takes about a minute: the cluster alerts' `for: 1m` becomes 20 s, still far
longer than a switchover's transients (two primaries for a poll at most, no primary and the
old leader down for a few seconds), and still longer than what the shipped rules allow is
proven by the promtool tests. Everything else (windows, thresholds, routing, inhibition) is
shipped as it is. Passing means: the transients went pending at most, resolved before their
`for:`, no notification reached any receiver, and TierwatchClusterFailover (info) fired for
the new leader and reached Alertmanager, which sends it nowhere.

Prometheus starts with an hour of history of the replica-freshness SLI (the replicas fresh,
backfilled with promtool): the burn-rate alerts divide the stale seconds by their long
window (1 h, 6 h), and on a Prometheus a minute old that window is a minute long, so the
few seconds a switchover leaves the replicas behind would read as a 14.4x burn. A tier
watched for an hour reads them as what they are (3 s of 3600: below 1x).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts import dashboards as gen
from tests.e2e.test_alerts_e2e import WebhookSink, fast_routing
from tests.patroni import PatroniCluster, tierwatch_config
from tests.promstack import Alertmanager, Prometheus
from tests.support import REPO, DaemonProcess, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not (Prometheus.available() and Alertmanager.available()),
                       reason="prometheus / prometheus-alertmanager not installed"),
]

CLUSTER = "demo"
SECONDS_PER_MINUTE = 20  # the scaled `for:`
FAILOVER = "TierwatchClusterFailover"


class PrometheusWithHistory(Prometheus):
    """Prometheus whose storage starts with `history` (OpenMetrics text) as TSDB blocks."""

    def __init__(self, history: str, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.history = history

    def _prepare(self) -> None:
        super()._prepare()
        assert self.dir is not None
        source = self.dir / "history.om"
        source.write_text(self.history)
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q",
                        str(source), str(self.dir / "data")],
                       check=True, capture_output=True, timeout=60)


def fresh_for_an_hour(targets: list[str], end: float) -> str:
    """tierwatch:pg_replica_fresh = 1 for `targets`, every second of the hour before `end`:
    the rules' evaluation interval, as avg_over_time weighs samples, not seconds."""
    lines = ["# TYPE tierwatch:pg_replica_fresh gauge"]
    for target in targets:
        lines += [f'tierwatch:pg_replica_fresh{{cluster="{CLUSTER}",target="{target}"}} 1 {t}'
                  for t in range(int(end) - 3660, int(end))]
    return "\n".join([*lines, "# EOF", ""])


def rules(tmp: Path) -> list[Path]:
    out = []
    for name in ("recording_rules.yml", "alerting_rules.yml"):
        text = re.sub(r"(\bfor:\s*)(\d+)m\b",
                      lambda m: f"{m.group(1)}{SECONDS_PER_MINUTE * int(m.group(2))}s",
                      (REPO / "alerts" / name).read_text())
        path = tmp / name
        path.write_text(text)
        out.append(path)
    return out


@dataclass
class Stack:
    pc: PatroniCluster
    daemon: DaemonProcess
    prom: Prometheus
    am: Alertmanager
    sink: WebhookSink


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    sink = WebhookSink()
    try:
        with PatroniCluster() as pc, Alertmanager(fast_routing(sink.port)).start() as am:
            daemon = DaemonProcess(tierwatch_config(pc, 1.0, 1.0, CLUSTER)).start()
            try:
                history = fresh_for_an_hour(pc.replicas(), time.time() - 5)
                with PrometheusWithHistory(
                    history, [f"127.0.0.1:{daemon.port}"], scrape_interval="1s",
                    rule_files=rules(tmp_path_factory.mktemp("rules")),
                    alertmanager_url=am.url, evaluation_interval="1s",
                ) as prom:
                    wait_until(prom.targets_up, 30, "Prometheus scraping tierwatch")
                    yield Stack(pc, daemon, prom, am, sink)
            finally:
                daemon.stop()
    finally:
        sink.close()


def _alerts(prom: Prometheus, state: str | None = None) -> set[str]:
    selector = 'alertname=~"Tierwatch.*"' + (f', alertstate="{state}"' if state else "")
    return {f"{a['metric']['alertname']} {a['metric']['alertstate']} "
            f"{a['metric'].get('target', '')}" for a in prom.query(f"ALERTS{{{selector}}}")}


def _ever(prom: Prometheus, start: float, end: float) -> set[str]:
    series = prom.query_range('ALERTS{alertname=~"Tierwatch.*"}', start, end, step=1)
    return {f"{s['metric']['alertname']} {s['metric']['alertstate']} "
            f"{s['metric'].get('target', '')}" for s in series}


def test_the_topology_panel_shows_patroni_roles(stack: Stack) -> None:
    """The PostgreSQL dashboard's Members table: every query answers for a Patroni cluster,
    and its Patroni column carries what /cluster says (tests/dashboards runs a static one)."""
    pc, prom = stack.pc, stack.prom
    roles = pc.wait_healthy()
    board = gen.build_all()["tierwatch-postgres.json"]
    panel = next(p for p in board["panels"] if p["title"] == "Members")
    variables = {"cluster": CLUSTER, "target": ".+"}
    exprs = [gen.interpolate(t["expr"], variables) for t in panel["targets"]]
    for expr in exprs[:3]:  # role, up, timeline: one row per member
        wait_until(lambda e=expr: len(prom.query(e)) == len(pc.names), 30, expr, interval=0.5)
    wait_until(lambda: len(prom.query(exprs[3])) == len(pc.names) - 1, 30, "replica lag")

    def patroni_column() -> dict[str, tuple[str, str]]:
        return {s["metric"]["target"]: (s["metric"]["role"], s["metric"]["state"])
                for s in prom.query(exprs[4])}

    wait_until(lambda: patroni_column() == roles, 30, f"Patroni roles {roles} in the panel")


def test_a_planned_switchover_pages_nobody(stack: Stack) -> None:
    pc, prom = stack.pc, stack.prom
    pc.wait_healthy()
    wait_until(lambda: prom.query(f'tierwatch_cluster_primaries{{cluster="{CLUSTER}"}} == 1'),
               30, "Prometheus sees one primary", interval=0.5)
    # a healthy cluster first: nothing pending, nothing firing
    wait_until(lambda: not _alerts(prom), 60, "no alert on the healthy cluster", interval=0.5)
    old, new = pc.leader(), pc.replicas()[0]
    pc.write(100)
    started = time.time()
    pc.switchover(new)
    pc.wait_healthy()
    # the promotion is recorded: info, for the new leader, held by Alertmanager
    wait_until(lambda: f"{FAILOVER} firing {new}" in _alerts(prom, "firing"),
               SECONDS_PER_MINUTE + 30, f"{FAILOVER} firing for {new}", interval=0.5)
    wait_until(lambda: any(a["labels"].get("alertname") == FAILOVER
                           for a in stack.am.alerts()), 15, f"{FAILOVER} in Alertmanager")
    # the transients are over: no page pending, nothing firing but the failover record
    # (which stays for its 10-minute window)
    last: set[str] = set()

    def only_failover() -> bool:
        last.clear()
        last.update(_alerts(prom))
        pages = prom.query('ALERTS{alertname=~"Tierwatch.*", severity="critical"}')
        return not pages and _alerts(prom, "firing") == {f"{FAILOVER} firing {new}"}

    try:
        wait_until(only_failover, 60, "no page pending, only the failover firing",
                   interval=0.5)
    except AssertionError as exc:
        lag = prom.query_range("tierwatch_pg_replica_lag_seconds > 0.5", started - 5,
                               time.time(), step=1)
        behind = {s["metric"]["target"]: [(round(float(t) - started), v) for t, v in s["values"]]
                  for s in lag}
        raise AssertionError(f"{exc}: {sorted(last)}; lag above 0.5 s: {behind}") from None
    time.sleep(3)  # Alertmanager's group_wait (1 s) for anything that did fire
    ever = _ever(prom, started, time.time())
    print(f"\nswitchover {old} -> {new}; alerts seen: {sorted(ever)}")
    assert {a for a in ever if " firing " in a} == {f"{FAILOVER} firing {new}"}, ever
    assert stack.sink.received == [], [(n.receiver, n.payload["alerts"])
                                       for n in stack.sink.received]
    # what tierwatch exported meanwhile: at most two primaries, for a moment
    counts = prom.query_range(f'tierwatch_cluster_primaries{{cluster="{CLUSTER}"}}',
                              started, time.time(), step=1)
    seen = {float(v) for s in counts for _, v in s["values"]}
    print(f"tierwatch_cluster_primaries over the switchover: {sorted(seen)}")
    assert 1.0 in seen and seen <= {0.0, 1.0, 2.0}

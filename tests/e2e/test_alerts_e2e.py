"""Alerts end to end: real tierwatch → Prometheus (shipped rules) → Alertmanager (shipped
routing) → webhook receivers, against a real primary and replica.

The rules are the shipped files with two test-only edits, so the test takes about a minute
instead of ten: every `for:` is scaled from minutes to 2 s per minute (keeping their order,
which the inhibition relies on: TargetDown fires before what it mutes), and the critical lag
threshold — the one place thresholds live — is set to 5 s. Alertmanager's waits are
shortened the same way. promtool tests (tests/rules) cover the real durations.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.promstack import Alertmanager, Prometheus
from tests.support import REPO, DaemonProcess, wait_until
from tests.topology import Topology

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (Prometheus.available() and Alertmanager.available()),
                       reason="prometheus / prometheus-alertmanager not installed"),
]

# what a down primary mutes in its cluster (alertmanager.yml): its replicas' lag and streaming
INHIBITED = re.compile(r"TierwatchReplicaLag.*|TierwatchReplicationBroken"
                       r"|TierwatchReplicaFreshnessBudgetBurn")
RUNBOOK_PREFIX = "https://github.com/tierwatch/tierwatch/blob/main/docs/runbooks.md#"


@dataclass
class Notification:
    receiver: str  # the webhook path: oncall or chat
    at: float
    payload: dict[str, Any]

    def alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.payload["alerts"] if status is None or a["status"] == status]


class WebhookSink:
    """Stands in for the pager and the chat: records every notification Alertmanager sends."""

    def __init__(self) -> None:
        self.received: list[Notification] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.received.append(
                    Notification(self.path.strip("/"), time.time(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(self, receiver: str | None, alertname: str, status: str, since: float = 0,
             **labels: str) -> dict[str, Any] | None:
        for note in list(self.received):
            if note.at < since or (receiver is not None and note.receiver != receiver):
                continue
            for alert in note.alerts(status):
                got = alert["labels"]
                if got.get("alertname") == alertname and all(
                        got.get(k) == v for k, v in labels.items()):
                    return alert
        return None

    def close(self) -> None:
        self.server.shutdown()


def scaled_rules(tmp: Path) -> list[Path]:
    """The shipped rule files with `for:` in seconds and the critical lag threshold at 5 s."""
    out = []
    for name in ("recording_rules.yml", "alerting_rules.yml"):
        text = (REPO / "alerts" / name).read_text()
        text = re.sub(r"(\bfor:\s*)(\d+)m\b", lambda m: f"{m.group(1)}{2 * int(m.group(2))}s",
                      text)
        if name == "recording_rules.yml":
            text, count = re.subn(
                r"(record: tierwatch:threshold:replica_lag_critical_seconds\s*\n\s*expr: )"
                r"vector\(\d+\)", r"\1vector(5)", text)
            assert count == 1, "the critical lag threshold moved: update this test"
        path = tmp / name
        path.write_text(text)
        out.append(path)
    return out


def fast_routing(port: int) -> str:
    config = yaml.safe_load((REPO / "alerts" / "alertmanager.yml").read_text()
                            .replace("127.0.0.1:9099", f"127.0.0.1:{port}"))
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    return yaml.safe_dump(config)


def _unix(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#+\s+(.+?)\s*$", (REPO / "docs/runbooks.md").read_text(), re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


class Writer:
    """Keeps the primary writing, as an application would."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            while not self._stop.wait(0.05):
                conn.execute("INSERT INTO items(payload) VALUES ('e2e')")

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def stack(private_topology: Topology, daemon_factory: Callable[..., DaemonProcess],
          tmp_path: Path) -> Iterator[tuple[Topology, WebhookSink, Prometheus, Alertmanager]]:
    sink = WebhookSink()
    daemon = daemon_factory(private_topology.tierwatch_config(poll_interval=1.0))
    alertmanager = Alertmanager(fast_routing(sink.port)).start()
    prometheus = Prometheus([f"127.0.0.1:{daemon.port}"], rule_files=scaled_rules(tmp_path),
                            alertmanager_url=alertmanager.url).start()
    try:
        wait_until(prometheus.targets_up, 30, "Prometheus scraping tierwatch")
        yield private_topology, sink, prometheus, alertmanager
    finally:
        prometheus.stop()
        alertmanager.stop()
        sink.close()


def test_lag_pages_oncall_and_a_down_primary_inhibits_its_cluster(
    stack: tuple[Topology, WebhookSink, Prometheus, Alertmanager],
) -> None:
    topo, sink, prometheus, alertmanager = stack
    app_db = topo.superuser_dsn(topo.primary, "app")

    # 1. replay paused while the primary writes: the lag page reaches on-call
    topo.psql(topo.replica, "SELECT pg_wal_replay_pause()")
    with Writer(app_db):
        page = wait_until(
            lambda: sink.find("oncall", "TierwatchReplicaLagCritical", "firing"),
            60, "the replica lag page at the on-call webhook")
        topo.psql(topo.replica, "SELECT pg_wal_replay_resume()")
    labels, notes = page["labels"], page["annotations"]
    assert labels["cluster"] == "main" and labels["target"] == "replica-1"
    assert labels["severity"] == "critical"
    assert "main/replica-1" in notes["description"]
    assert notes["summary"].endswith(".")
    url = notes["runbook_url"]
    assert url.startswith(RUNBOOK_PREFIX)
    assert url.removeprefix(RUNBOOK_PREFIX) in runbook_anchors(), url
    # never on the chat channel: critical goes to the pager only
    assert sink.find("chat", "TierwatchReplicaLagCritical", "firing") is None
    wait_until(lambda: sink.find("oncall", "TierwatchReplicaLagCritical", "resolved"),
               60, "the lag page resolved after replay resumed")

    # 2. the primary stops: TargetDown pages, its replicas' streaming alerts stay muted
    stopped_at = time.time()
    topo.primary.stop()
    try:
        down = wait_until(lambda: sink.find("oncall", "TierwatchTargetDown", "firing",
                                            since=stopped_at, target="primary"),
                          60, "the TargetDown page for the primary")
        assert down["labels"]["kind"] == "postgres"
        assert down["labels"]["severity"] == "critical"
        assert down["labels"]["role"] == "primary"  # what lets it mute its replicas' lag

        # the consequences fire in Prometheus but Alertmanager holds them back
        def muted_consequence() -> list[dict[str, Any]]:
            return [a for a in alertmanager.alerts()
                    if INHIBITED.fullmatch(a["labels"]["alertname"])
                    and a["labels"].get("cluster") == "main"
                    and a["status"]["inhibitedBy"]]

        def muted_for_a_while() -> list[dict[str, Any]]:
            # held back for three group intervals: a leak would have been sent by then
            return [a for a in muted_consequence()
                    if time.time() - _unix(a["startsAt"]) >= 3]

        muted = wait_until(muted_for_a_while, 60,
                           "a replication alert inhibited by TargetDown for 3 s")
        names = {a["labels"]["alertname"] for a in muted}
        firing = prometheus.query('ALERTS{alertstate="firing", cluster="main"}')
        assert names <= {a["metric"]["alertname"] for a in firing}
        leaked = [a["labels"]["alertname"] for note in sink.received if note.at >= stopped_at
                  for a in note.alerts("firing")
                  if INHIBITED.fullmatch(a["labels"]["alertname"])]
        assert not leaked, f"inhibited alerts reached a receiver: {leaked} (muted: {names})"
    finally:
        topo.primary.start()

    # 3. recovery: the resolved page arrives
    wait_until(lambda: sink.find("oncall", "TierwatchTargetDown", "resolved",
                                 since=stopped_at, target="primary"),
               60, "TargetDown resolved after the primary came back")

"""Checks alerts/ (Prometheus rules, Alertmanager config) with their tools and our conventions."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.promstack import Alertmanager

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
RECORDING_RULES = ALERTS / "recording_rules.yml"
ALERTING_RULES = ALERTS / "alerting_rules.yml"
ALERTMANAGER = ALERTS / "alertmanager.yml"
TEST_FILES = sorted((ALERTS / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
ALERTS_DOC = ROOT / "docs" / "alerts.md"

RUNBOOK_BASE = "https://github.com/tierwatch/tierwatch/blob/main/docs/runbooks.md#"
CONTRACT_RECORDING_RULES = {
    "tierwatch:redis_cache_hit_ratio:rate5m",
    "tierwatch:pg_cache_hit_ratio:rate5m",
    "tierwatch:pgbouncer_pool_saturation:max",
    "tierwatch:pg_replica_lag_seconds:max",
}
SEVERITIES = {"critical", "warning", "info"}
# Alerts about tierwatch or Prometheus as a whole: no cluster or target exists to name.
NO_TARGET_ALERTS = {
    "TierwatchExporterAbsent": "built on up{job=...} and absent(): no tierwatch series at all",
    "TierwatchAlertThresholdsMissing": "about the rule files, one label-less series",
}
THRESHOLD = re.compile(r"tierwatch:threshold:[a-z0-9_]+")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} not on PATH (Debian: apt-get install prometheus prometheus-alertmanager)"
        )
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def _groups(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text())["groups"]


def _rules(path: Path) -> list[dict]:
    return [rule for group in _groups(path) for rule in group["rules"]]


def _alert_rules() -> list[dict]:
    return [rule for rule in _rules(ALERTING_RULES) if "alert" in rule]


def _alert_names() -> set[str]:
    return {rule["alert"] for rule in _alert_rules()}


def _record_names() -> set[str]:
    return {rule["record"] for rule in _rules(RECORDING_RULES) if "record" in rule}


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(int(n) * units[u] for n, u in parts)


def _unit_tests() -> list[tuple[Path, dict]]:
    return [(path, yaml.safe_load(path.read_text())) for path in TEST_FILES]


# --- the tools -------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    result = _run(_tool("promtool"), "check", "rules", str(RECORDING_RULES), str(ALERTING_RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests() -> None:
    assert TEST_FILES, "no promtool test files under alerts/tests/"
    result = _run(_tool("promtool"), "test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_check_config() -> None:
    result = _run(_tool("amtool"), "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("severity", "receiver"),
    [("critical", "oncall"), ("warning", "chat"), ("info", "null"), ("unset", "chat")],
)
def test_amtool_routes(severity: str, receiver: str) -> None:
    labels = ["alertname=TierwatchTargetDown", "cluster=main"]
    if severity != "unset":
        labels.append(f"severity={severity}")
    result = _run(
        _tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


# --- conventions of the alerting rules ---------------------------------------------------------


@pytest.mark.parametrize(
    "rule", _alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}"
)
def test_alert_conventions(rule: dict) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"Tierwatch[A-Z][A-Za-z]+", name)
    assert rule["labels"]["severity"] in SEVERITIES
    assert _seconds(rule.get("for", "0s")) >= 60, (
        "every alert needs `for:` >= 1m (no flapping on one poll)"
    )
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert "{{" not in annotations["summary"], "summary must be static"
    assert annotations["summary"].endswith(".")
    if name not in NO_TARGET_ALERTS:
        assert "$labels.cluster" in annotations["description"]
        assert "$labels.target" in annotations["description"]
        assert "$value" in annotations["description"]
    assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower()


def test_runbook_sections_match_alerts() -> None:
    headings = re.findall(r"^## (\S+)\s*$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    assert len(headings) == len(set(headings)), "duplicate runbook sections"
    assert set(headings) == _alert_names()


_DASHBOARD_LINE = re.compile(
    r"^\*\*Dashboard\.\*\* \[[^\]]+\]\(\.\./dashboards/([\w-]+\.json)\), panels? (.+)\.$",
    flags=re.MULTILINE)


def test_every_runbook_section_links_the_dashboard_panel_of_its_signal() -> None:
    sections = re.split(r"(?m)^## ", RUNBOOKS.read_text())[1:]
    for section in sections:
        name = section.split("\n", 1)[0].strip()
        found = _DASHBOARD_LINE.findall(section)
        assert len(found) == 1, f"{name}: needs one '**Dashboard.** [..](../dashboards/..)' line"
        (file, panels), = found
        board = json.loads((ROOT / "dashboards" / file).read_text())
        titles = {panel["title"] for panel in board["panels"] if panel["type"] != "row"}
        for panel in re.findall(r"\*([^*]+)\*", panels):
            assert panel in titles, f"{name}: {file} has no panel {panel!r}"


def test_alerts_doc_lists_every_alert() -> None:
    text = ALERTS_DOC.read_text()
    missing = sorted(
        name for name in _alert_names() if f"| {name} " not in text and f"[{name}]" not in text
    )
    assert not missing, f"docs/alerts.md has no table row for {missing}"


def test_contract_recording_rules_exist() -> None:
    assert _record_names() >= CONTRACT_RECORDING_RULES


def test_thresholds_referenced_are_recorded() -> None:
    recorded = {name for name in _record_names() if THRESHOLD.fullmatch(name)}
    referenced = set(THRESHOLD.findall(ALERTING_RULES.read_text()))
    assert referenced - recorded == set(), "alert uses a threshold that no rule records"
    assert recorded - referenced == set(), "threshold recorded but used by no alert"


def test_thresholds_missing_alert_counts_all_thresholds() -> None:
    recorded = [name for name in _record_names() if THRESHOLD.fullmatch(name)]
    (rule,) = [r for r in _alert_rules() if r["alert"] == "TierwatchAlertThresholdsMissing"]
    assert re.search(rf"<\s*{len(recorded)}\s*$", rule["expr"].strip()), rule["expr"]
    assert f"of the {len(recorded)} " in rule["annotations"]["description"]


# --- coverage of the promtool unit tests ---------------------------------------------------------


def test_every_alert_has_firing_and_quiet_cases() -> None:
    firing: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    for path, suite in _unit_tests():
        for case in suite["tests"]:
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                if not expected:
                    quiet.add(check["alertname"])
                for alert in expected:
                    assert set(alert["exp_annotations"]) == {
                        "summary",
                        "description",
                        "runbook_url",
                    }, path
                    firing.add((check["alertname"], alert["exp_labels"]["severity"]))
    variants = {(r["alert"], r["labels"]["severity"]) for r in _alert_rules()}
    assert variants - firing == set(), "alert (name, severity) without a firing test case"
    assert _alert_names() - quiet == set(), "alert without a not-firing test case"


def test_every_recording_rule_has_exp_samples() -> None:
    tested = set()
    for _, suite in _unit_tests():
        for case in suite["tests"]:
            for check in case.get("promql_expr_test", []):
                for sample in check.get("exp_samples") or []:
                    tested.add(sample["labels"].split("{")[0].strip())
    assert _record_names() - tested == set(), "recording rule without a non-empty exp_samples test"


def test_unit_tests_evaluate_groups_in_dependency_order() -> None:
    # promtool evaluates groups in an unspecified order unless told; an alert evaluated before
    # the recording rule it reads sees the previous step's value, making `for:` timing flaky.
    wanted = [g["name"] for g in _groups(RECORDING_RULES)] + [
        g["name"] for g in _groups(ALERTING_RULES)
    ]
    for path, suite in _unit_tests():
        if "../recording_rules.yml" in suite["rule_files"]:
            assert suite.get("group_eval_order") == wanted, path.name


# --- Alertmanager --------------------------------------------------------------------------------


def _alertmanager() -> dict:
    return yaml.safe_load(ALERTMANAGER.read_text())


def test_alertmanager_webhooks_are_substitutable() -> None:
    urls = {
        receiver["name"]: [hook["url"] for hook in receiver.get("webhook_configs", [])]
        for receiver in _alertmanager()["receivers"]
    }
    assert urls == {
        "oncall": ["http://127.0.0.1:9099/oncall"],
        "chat": ["http://127.0.0.1:9099/chat"],
        "null": [],
    }
    assert _alertmanager()["route"]["group_by"] == ["cluster", "alertname"]


def test_inhibit_rules_name_real_alerts() -> None:
    names = _alert_names()
    for rule in _alertmanager()["inhibit_rules"]:
        for side in ("source_matchers", "target_matchers"):
            for matcher in rule[side]:
                label, op, value = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', matcher).groups()
                if label != "alertname":
                    continue
                # Alertmanager anchors regexes, like re.fullmatch.
                matched = {
                    n for n in names
                    if (bool(re.fullmatch(value, n)) if "~" in op else n == value)
                    == (not op.startswith("!"))
                }
                assert matched, f"{matcher} matches no alert"


def _request(url: str, body: object | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


# (alertname, severity, cluster, target, extra labels) -> inhibited? Cluster main: its primary
# is down. Cluster dc2: a replica is down. Cluster other: a PgBouncer is down.
INHIBITION_CASES: list[tuple[str, str, str, str, dict[str, str], bool]] = [
    ("TierwatchTargetDown", "critical", "main", "primary", {"kind": "postgres", "role": "primary"},
     False),
    ("TierwatchTargetDown", "warning", "main", "cache", {"kind": "redis"}, False),
    ("TierwatchTargetDown", "critical", "dc2", "replica-1", {"kind": "postgres"}, False),
    ("TierwatchTargetDown", "critical", "other", "bouncer", {"kind": "pgbouncer"}, False),
    # a down primary mutes its replicas' lag and streaming alerts ...
    ("TierwatchReplicaLagCritical", "critical", "main", "replica-1", {}, True),
    ("TierwatchReplicationBroken", "critical", "main", "replica-1", {}, True),
    ("TierwatchReplicaFreshnessBudgetBurn", "critical", "main", "replica-1", {"window": "1h"},
     True),
    # ... and its own symptoms, but not another target's pool, connection or cache alerts
    ("TierwatchReplicationSlotInactive", "warning", "main", "primary", {"slot": "s"}, True),
    ("TierwatchPgbouncerClientsWaiting", "warning", "main", "bouncer", {"database": "app"},
     False),
    ("TierwatchPostgresConnectionsNearLimit", "warning", "main", "replica-1", {}, False),
    # a down Redis mutes its own alerts only
    ("TierwatchPollsFailing", "warning", "main", "cache", {"kind": "redis"}, True),
    ("TierwatchRedisMemoryNearLimit", "warning", "main", "cache", {}, True),
    ("TierwatchRedisMemoryNearLimit", "warning", "main", "cache-2", {}, False),
    # a down replica never mutes the primary's slot and disk alerts (the retention it causes)
    ("TierwatchReplicationSlotInactive", "warning", "dc2", "primary", {"slot": "replica_1"},
     False),
    ("TierwatchReplicationSlotRetainingWal", "warning", "dc2", "primary", {"slot": "replica_1"},
     False),
    ("TierwatchReplicationSlotWalLimitSoon", "warning", "dc2", "primary", {"slot": "replica_1"},
     False),
    # the primary view of the down replica's streaming is the replica's own symptom
    ("TierwatchReplicationBroken", "warning", "dc2", "replica-1", {}, True),
    ("TierwatchReplicaLagHigh", "warning", "dc2", "replica-2", {}, False),
    # a critical variant supersedes the warning of the same alert, target and database
    ("TierwatchPostgresXidAgeHigh", "critical", "dc2", "primary", {"datname": "app"}, False),
    ("TierwatchPostgresXidAgeHigh", "warning", "dc2", "primary", {"datname": "app"}, True),
    ("TierwatchPostgresXidAgeHigh", "warning", "dc2", "primary", {"datname": "logs"}, False),
    # a down PgBouncer mutes nothing of another target, in any cluster
    ("TierwatchReplicaLagCritical", "critical", "other", "replica-1", {}, False),
    ("TierwatchReplicaLagHigh", "warning", "other", "replica-1", {}, True),  # the critical one
    ("TierwatchReplicaLagHigh", "warning", "other", "replica-2", {}, False),
    ("TierwatchPgbouncerPoolSaturated", "warning", "other", "bouncer-2", {"database": "app"},
     False),
]


def _case_key(labels: dict[str, str]) -> tuple[str, ...]:
    return tuple(labels.get(k, "") for k in ("alertname", "severity", "cluster", "target",
                                             "slot", "datname"))


def test_alertmanager_inhibits_as_documented() -> None:
    """Feeds alerts to a real Alertmanager with our config and reads back which are inhibited:
    a down target mutes only its own symptoms, a down primary also its replicas' lag."""
    if not Alertmanager.available():
        pytest.skip("alertmanager not on PATH (Debian: apt-get install prometheus-alertmanager)")
    alerts, expected = [], {}
    for name, severity, cluster, target, extra, muted in INHIBITION_CASES:
        labels = {"alertname": name, "severity": severity, "cluster": cluster,
                  "target": target, **extra}
        alerts.append({"labels": labels})
        expected[_case_key(labels)] = muted
    assert len(expected) == len(INHIBITION_CASES), "two cases with the same key"
    with Alertmanager(ALERTMANAGER.read_text()) as am:
        _request(f"{am.url}/api/v2/alerts", alerts)

        def picture() -> dict[tuple[str, ...], bool]:
            return {_case_key(a["labels"]): bool(a["status"]["inhibitedBy"]) for a in am.alerts()}

        # The inhibitor consumes new alerts asynchronously: poll until the picture settles.
        deadline = time.monotonic() + 10
        got = picture()
        while got != expected and time.monotonic() < deadline:
            time.sleep(0.2)
            got = picture()
    wrong = {key: got.get(key) for key, muted in expected.items() if got.get(key) != muted}
    assert not wrong, f"inhibited? (got) differs from the documented rules: {wrong}"

"""Generates the Grafana dashboards in dashboards/*.json (run it after changing this file).

    python scripts/dashboards.py            # (re)writes dashboards/<uid>.json
    python scripts/dashboards.py --check    # exit 1 if the committed JSON differs
    python scripts/dashboards.py --out DIR  # writes somewhere else

The JSON is Grafana's classic dashboard model (Grafana 10 and 11 load it as is). Thresholds
are not typed in here: they are read from the `tierwatch:threshold:*` rules in
alerts/recording_rules.yml, so a panel turns orange/red exactly where the alert fires
(orange for warning alerts, red for critical ones). Why a small builder rather than
grafana-foundation-sdk: docs/dashboards.md, "How the JSON is made".
"""

from __future__ import annotations

import argparse
import ast
import json
import operator
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS_DIR = REPO / "dashboards"
RECORDING_RULES = REPO / "alerts" / "recording_rules.yml"

SCHEMA_VERSION = 39  # Grafana 11.0; Grafana 10.x loads it unchanged (no migration needed)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["tierwatch"]
RATE = "$__rate_interval"

# Colours: a warning alert's threshold is orange, a critical one's red.
OK, WARNING, CRITICAL, INFO = "green", "orange", "red", "blue"

# Grafana colours a value from a step upward (>=). An alert `x > 0` therefore needs a step
# just above 0: the smallest value the panel can show (one client, 0.01 evictions/s).
WHOLE = 1.0
PER_SECOND = 0.01


# --------------------------------------------------------------------------- thresholds


_OPS = {ast.Mult: operator.mul, ast.Add: operator.add, ast.Sub: operator.sub,
        ast.Div: operator.truediv}


def _arith(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_arith(node.left), _arith(node.right))
    raise ValueError(f"unsupported threshold expression: {ast.dump(node)}")


def load_thresholds(path: Path = RECORDING_RULES) -> dict[str, float]:
    """`tierwatch:threshold:<name>` -> value, from rules of the form `vector(<arithmetic>)`."""
    found: dict[str, float] = {}
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            name = rule.get("record", "")
            if not name.startswith("tierwatch:threshold:"):
                continue
            expr = rule["expr"].strip()
            if not (expr.startswith("vector(") and expr.endswith(")")):
                raise ValueError(f"{name}: expected vector(<number>), got {expr!r}")
            found[name.removeprefix("tierwatch:threshold:")] = _arith(
                ast.parse(expr[len("vector("):-1], mode="eval").body)
    return found


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def steps(base: str, *rest: tuple[float, str]) -> dict[str, Any]:
    out: list[dict[str, Any]] = [{"color": base, "value": None}]
    out += [{"color": color, "value": _number(value)} for value, color in rest]
    return {"mode": "absolute", "steps": out}


def above(value: float, color: str = WARNING, *, strict_resolution: float = 0.0) -> dict:
    """Green below `value`, `color` from it up. For a strict `> 0` alert give the resolution."""
    if value == 0 and strict_resolution:
        value = strict_resolution
    return steps(OK, (value, color))


def below(value: float, color: str = WARNING) -> dict:
    """`color` below `value` (an alert on `x < value`), green from it up."""
    return steps(color, (value, OK))


# --------------------------------------------------------------------------- panels


@dataclass(frozen=True)
class Q:
    """One query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


def _targets(queries: Sequence[Q]) -> list[dict[str, Any]]:
    out = []
    for i, q in enumerate(queries):
        target: dict[str, Any] = {
            "datasource": DATASOURCE,
            "refId": chr(ord("A") + i),
            "expr": q.expr,
            "legendFormat": q.legend or "__auto",
            "range": not q.instant,
            "instant": q.instant,
        }
        if q.table:
            target["format"] = "table"
        out.append(target)
    return out


def _mappings(values: dict[int, tuple[str, str]]) -> list[dict[str, Any]]:
    """{value: (text, colour)} as one Grafana value mapping."""
    options = {str(v): {"text": text, "color": color, "index": i}
               for i, (v, (text, color)) in enumerate(values.items())}
    return [{"type": "value", "options": options}]


def _panel(
    kind: str,
    title: str,
    description: str,
    field_config: dict[str, Any],
    options: dict[str, Any],
    queries: Sequence[Q],
    **extra: Any,
) -> dict[str, Any]:
    """What every panel has, in the order Grafana writes it."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": field_config,
        "options": options,
        "targets": _targets(queries),
        **extra,
    }


def timeseries(
    title: str,
    queries: Sequence[Q],
    unit: str,
    description: str,
    *,
    thresholds: dict[str, Any] | None = None,
    min_: float | None = None,
    max_: float | None = None,
    decimals: int | None = None,
    fill: int = 10,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": fill,
            "showPoints": "never",
            "spanNulls": False,
            "axisSoftMin": 0,
            "stacking": {"mode": "none", "group": "A"},
            "thresholdsStyle": {"mode": "dashed" if thresholds else "off"},
        },
        "thresholds": thresholds or steps(OK),
    }
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    if decimals is not None:
        defaults["decimals"] = decimals
    return _panel("timeseries", title, description, {"defaults": defaults, "overrides": []}, {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True,
                   "calcs": []},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }, queries)


def stat(
    title: str,
    queries: Sequence[Q],
    unit: str,
    description: str,
    *,
    thresholds: dict[str, Any] | None = None,
    mappings: dict[int, tuple[str, str]] | None = None,
    text_mode: str = "auto",
    graph: bool = True,
    decimals: int | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": thresholds or steps(INFO),
        "mappings": _mappings(mappings) if mappings else [],
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return _panel("stat", title, description, {"defaults": defaults, "overrides": []}, {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background",
        "graphMode": "area" if graph and not mappings else "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": text_mode,
        "wideLayout": True,
        "showPercentChange": False,
    }, queries)


def _table(title: str, description: str, queries: list[Q], *, sort_by: str,
           overrides: dict[str, list[dict[str, Any]]], transformations: list[dict[str, Any]]
           ) -> dict[str, Any]:
    """A table panel: `overrides` holds the properties of a column by its name."""
    field_config = {
        "defaults": {"custom": {"align": "auto", "cellOptions": {"type": "auto"}}},
        "overrides": [{"matcher": {"id": "byName", "options": name}, "properties": props}
                      for name, props in overrides.items()],
    }
    options = {"showHeader": True, "cellHeight": "sm",
               "sortBy": [{"displayName": sort_by, "desc": False}],
               "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    return _panel("table", title, description, field_config, options, queries,
                  transformations=transformations)


def alerts_table(title: str, expr: str, description: str) -> dict[str, Any]:
    severity_colors = {"critical": CRITICAL, "warning": WARNING, "info": INFO}
    severity = [
        {"id": "custom.cellOptions", "value": {"type": "color-background"}},
        {"id": "mappings", "value": [{"type": "value", "options": {
            name: {"text": name, "color": color, "index": i}
            for i, (name, color) in enumerate(severity_colors.items())}}]},
    ]
    columns = {
        "id": "organize",
        "options": {
            "excludeByName": {"Time": True, "Value": True, "__name__": True,
                              "alertstate": True, "job": True, "instance": True},
            "indexByName": {"alertname": 0, "severity": 1, "cluster": 2, "target": 3},
            "renameByName": {},
        },
    }
    return _table(title, description, [Q(expr, instant=True, table=True)], sort_by="severity",
                  overrides={"severity": severity}, transformations=[columns])


def members_table(title: str, columns: dict[str, Q], description: str, *,
                  labels: dict[str, str], overrides: dict[str, list[dict[str, Any]]]
                  ) -> dict[str, Any]:
    """One row per (cluster, target): instant table queries merged on their labels; each
    query's value becomes the column `columns` names it by, `labels` renames label columns,
    `overrides` holds the properties of a column (mappings, unit, cell colours)."""
    names = list(columns)
    queries = list(columns.values())
    # a column named "_..." is queried for its labels only: its value is hidden
    value_of = {name: f"Value #{chr(ord('A') + i)}" for i, name in enumerate(names)}
    rename = {value_of[name]: name for name in names if not name.startswith("_")}
    hidden = {"Time": True, **{value_of[name]: True for name in names if name.startswith("_")}}
    organize = {"id": "organize", "options": {
        "excludeByName": hidden,
        "indexByName": {"cluster": 0, "target": 1},
        "renameByName": {**rename, **labels},
    }}
    return _table(title, description, queries, sort_by="cluster", overrides=overrides,
                  transformations=[{"id": "merge", "options": {}}, organize])


def _coloured(values: dict[int, tuple[str, str]]) -> list[dict[str, Any]]:
    """A column's properties: its values mapped to text on a coloured background."""
    return [{"id": "mappings", "value": _mappings(values)},
            {"id": "custom.cellOptions", "value": {"type": "color-background"}}]


# --------------------------------------------------------------------------- dashboards


class Board:
    """A dashboard under construction: panels flow left to right in a 24-column grid."""

    def __init__(self, uid: str, title: str, description: str, target_kind: str | None) -> None:
        self.uid = uid
        self.title = title
        self.description = description
        self.target_kind = target_kind
        self.panels: list[dict[str, Any]] = []
        self._x = 0
        self._y = 0
        self._line_height = 0

    def _newline(self) -> None:
        self._y += self._line_height
        self._x = 0
        self._line_height = 0

    def row(self, title: str) -> None:
        if self._x:
            self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y}})
        self._y += 1

    def add(self, width: int, height: int, *panels: dict[str, Any]) -> None:
        for panel in panels:
            if self._x + width > 24:
                self._newline()
            panel["gridPos"] = {"h": height, "w": width, "x": self._x, "y": self._y}
            self.panels.append(panel)
            self._x += width
            self._line_height = max(self._line_height, height)

    def _variables(self) -> list[dict[str, Any]]:
        kind = f'kind="{self.target_kind}", ' if self.target_kind else ""
        all_current = {"selected": True, "text": ["All"], "value": ["$__all"]}

        def query_var(name: str, label: str, query: str) -> dict[str, Any]:
            return {
                "type": "query", "name": name, "label": label, "datasource": DATASOURCE,
                "query": query, "definition": query, "refresh": 2, "sort": 1,
                "includeAll": True, "multi": True, "allValue": ".*", "current": all_current,
                "options": [], "regex": "", "hide": 0,
            }

        return [
            {"type": "datasource", "name": "datasource", "label": "Data source",
             "query": "prometheus", "current": {}, "options": [], "refresh": 1, "regex": "",
             "hide": 0, "includeAll": False, "multi": False},
            query_var("cluster", "Cluster", "label_values(tierwatch_up, cluster)"),
            query_var("target", "Target",
                      f'label_values(tierwatch_up{{{kind}cluster=~"$cluster"}}, target)'),
        ]

    def build(self) -> dict[str, Any]:
        for i, panel in enumerate(self.panels, start=1):
            panel["id"] = i
        ordered = [{"id": p.pop("id"), **p} for p in self.panels]
        return {
            "id": None,
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": TAGS,
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "timepicker": {},
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "links": [{"type": "dashboards", "tags": TAGS, "title": "tierwatch",
                       "asDropdown": True, "includeVars": True, "keepTime": True,
                       "icon": "external link", "targetBlank": False, "tooltip": "", "url": ""}],
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts", "type": "dashboard"}]},
            "templating": {"list": self._variables()},
            "panels": ordered,
        }


S = 'cluster=~"$cluster", target=~"$target"'
UP_MAP = {1: ("UP", OK), 0: ("DOWN", CRITICAL)}


# The /replica verdict at max_lag 1 s, from what Prometheus holds: the lag series exists only
# while the last poll succeeded; "fresh" compares the poll's age at scrape time with three
# poll intervals (1 / the poll rate); replicas seen in the last 10 minutes but failing that
# read 0 instead of vanishing.
READS_HEALTHY = (
    f"((tierwatch_pg_replica_lag_seconds{{{S}}} <= bool 1) and on (cluster, target) "
    f"(timestamp(tierwatch_last_poll_success_timestamp_seconds{{{S}}}) "
    f"- tierwatch_last_poll_success_timestamp_seconds{{{S}}} "
    f"<= 3 / rate(tierwatch_poll_duration_seconds_count{{{S}}}[5m]))) "
    f"or on (cluster, target) "
    f"(0 * (max_over_time(tierwatch_pg_in_recovery{{{S}}}[10m]) == 1))"
)


def overview(t: dict[str, float]) -> dict[str, Any]:
    b = Board("tierwatch-overview", "tierwatch / Overview",
              "One screen for the whole data tier: is every server polled, are replicas "
              "current, do pools queue, does the cache hold, is anything firing?", None)
    b.row("Now")
    b.add(9, 5, stat(
        "Targets up", [Q(f"tierwatch_up{{{S}}}", "{{target}}")], "none",
        "tierwatch_up per target: DOWN means tierwatch cannot poll it "
        "(TierwatchTargetDown after 1 minute).",
        thresholds=steps(CRITICAL, (1, OK)), mappings=UP_MAP, text_mode="value_and_name"))
    b.add(3, 5, stat(
        "Worst replica lag",
        [Q('max(tierwatch:pg_replica_lag_seconds:max{cluster=~"$cluster"})', "lag")], "s",
        "Largest replica lag of the selected clusters (recording rule "
        "tierwatch:pg_replica_lag_seconds:max).",
        thresholds=steps(OK, (t["replica_lag_warning_seconds"], WARNING),
                         (t["replica_lag_critical_seconds"], CRITICAL))))
    b.add(3, 5, stat(
        "Worst pool saturation",
        [Q('max(tierwatch:pgbouncer_pool_saturation:max{cluster=~"$cluster"})', "saturation")],
        "percentunit",
        "(Active server connections + waiting clients) / pool size of the fullest PgBouncer "
        "pool; 100 % and more means clients queue.",
        thresholds=above(t["pgbouncer_pool_saturation_ratio"])))
    b.add(3, 5, stat(
        "Redis hit ratio (5m)",
        [Q(f"min(tierwatch:redis_cache_hit_ratio:rate5m{{{S}}})", "hit ratio")], "percentunit",
        "Share of Redis lookups answered from the cache over 5 minutes (lowest target).",
        thresholds=below(t["redis_cache_hit_ratio"])))
    b.add(3, 5, stat(
        "PG buffer hit ratio (5m)",
        [Q(f"min(tierwatch:pg_cache_hit_ratio:rate5m{{{S}}})", "hit ratio")], "percentunit",
        "Share of PostgreSQL block accesses served from shared_buffers over 5 minutes "
        "(lowest target).",
        thresholds=below(t["pg_cache_hit_ratio"])))
    b.add(3, 5, stat(
        "Redis evictions",
        [Q(f"sum(rate(tierwatch_redis_evicted_keys_total{{{S}}}[{RATE}]))", "evictions")],
        "suffix: keys/s",
        "Keys Redis evicts per second to stay under maxmemory.",
        thresholds=above(t["redis_evictions_per_second"], strict_resolution=PER_SECOND),
        decimals=2))
    b.add(4, 4, stat(
        "Clients waiting",
        [Q(f'sum(tierwatch_pgbouncer_clients{{{S}, state="waiting"}})', "waiting")], "none",
        "PgBouncer clients queued for a server connection, all pools "
        "(TierwatchPgbouncerClientsWaiting).",
        thresholds=above(t["pgbouncer_clients_waiting"], strict_resolution=WHOLE)))
    b.add(4, 4, stat(
        "Redis memory of maxmemory",
        [Q(f"max(tierwatch_redis_memory_used_bytes{{{S}}} "
           f"/ (tierwatch_redis_memory_max_bytes{{{S}}} > 0))", "used")], "percentunit",
        "used_memory / maxmemory of the fullest Redis. An allkeys-* cache sits near 100 % "
        "by design (TierwatchRedisMemoryNearLimit leaves it out).",
        thresholds=above(t["redis_memory_ratio"])))
    b.add(4, 4, stat(
        "Replicas streaming",
        [Q(f"sum(tierwatch_pg_replicas_streaming{{{S}}})", "streaming")], "none",
        "Replicas in state streaming, as the primaries see them (TierwatchReplicationBroken "
        "compares them with the configured replicas)."))
    b.add(4, 4, stat(
        "WAL receivers",
        [Q(f"min(tierwatch_pg_wal_receiver_up{{{S}}})", "receivers")], "none",
        "Are all replicas' WAL receivers streaming? (TierwatchReplicationBroken)",
        thresholds=steps(CRITICAL, (1, OK)),
        mappings={1: ("all streaming", OK), 0: ("STOPPED", CRITICAL)}))
    b.add(4, 4, stat(
        "Inactive slots",
        [Q(f"sum((1 - tierwatch_pg_replication_slot_active{{{S}}}) "
           f"and on (cluster, target) (tierwatch_pg_in_recovery{{{S}}} == 0))", "inactive")],
        "none", "Replication slots on primaries with no consumer: they hold back WAL "
        "(TierwatchReplicationSlotInactive).",
        thresholds=above(0, strict_resolution=WHOLE), decimals=0))
    b.add(4, 4, stat(
        "New sessions",
        [Q(f"sum(tierwatch:pg_sessions:rate2m{{{S}}})", "sessions/s")], "ops",
        "PostgreSQL sessions opened per second over 2 minutes, all servers: a pooled "
        "application opens a few a minute (TierwatchPostgresConnectionStorm).",
        thresholds=above(t["pg_sessions_per_second"])))
    b.add(24, 4, stat(
        "Replicas healthy for reads now", [Q(READS_HEALTHY, "{{cluster}}/{{target}}")], "none",
        "Each replica as tierwatch's /replica check judges it with the default max_lag of 1 s "
        "(docs/routing.md): HEALTHY when its last poll succeeded, is at most three poll "
        "intervals old and its lag is at most 1 s; NOT HEALTHY otherwise (a replica seen in "
        "the last 10 minutes that is down, stale or lagging). HAProxy sends reads elsewhere.",
        thresholds=steps(CRITICAL, (1, OK)),
        mappings={1: ("HEALTHY", OK), 0: ("NOT HEALTHY", CRITICAL)},
        text_mode="value_and_name"))

    b.row("Trends")
    b.add(12, 8, timeseries(
        "Replica lag", [Q(f"tierwatch_pg_replica_lag_seconds{{{S}}}", "{{cluster}}/{{target}}")],
        "s", "How far behind its primary each replica's visible data is.",
        thresholds=steps(OK, (t["replica_lag_warning_seconds"], WARNING),
                         (t["replica_lag_critical_seconds"], CRITICAL))))
    b.add(12, 8, timeseries(
        "PgBouncer pool saturation",
        [Q(f"tierwatch_pgbouncer_pool_saturation_ratio{{{S}}}",
           "{{target}} {{database}}/{{user}}")],
        "percentunit", "(Active servers + waiting clients) / pool size per pool.",
        thresholds=above(t["pgbouncer_pool_saturation_ratio"])))
    b.add(12, 8, timeseries(
        "Redis cache hit ratio (5m)",
        [Q(f"tierwatch:redis_cache_hit_ratio:rate5m{{{S}}}", "{{cluster}}/{{target}}")],
        "percentunit", "Hits / (hits + misses) over 5 minutes.",
        thresholds=below(t["redis_cache_hit_ratio"]), min_=0, max_=1))
    b.add(12, 8, timeseries(
        "Redis evictions",
        [Q(f"rate(tierwatch_redis_evicted_keys_total{{{S}}}[{RATE}])", "{{cluster}}/{{target}}")],
        "suffix: keys/s", "Keys evicted per second because of maxmemory.",
        thresholds=above(t["redis_evictions_per_second"], strict_resolution=PER_SECOND)))
    b.add(12, 8, timeseries(
        "Connections vs limits", [
            Q(f"sum without (state) (tierwatch_pg_connections{{{S}}}) "
              f"/ tierwatch_pg_max_connections{{{S}}}", "{{target}} of max_connections"),
            Q(f"tierwatch_pgbouncer_client_connections{{{S}}} "
              f"/ (tierwatch_pgbouncer_max_client_connections{{{S}}} > 0)",
              "{{target}} of max_client_conn"),
            Q(f"tierwatch_redis_connected_clients{{{S}}} "
              f"/ (tierwatch_redis_max_clients{{{S}}} > 0)", "{{target}} of maxclients"),
        ],
        "percentunit",
        "Client connections as a share of each server's limit (PostgreSQL max_connections, "
        "PgBouncer max_client_conn, Redis maxclients).",
        thresholds=above(t["pg_connections_ratio"]), min_=0))
    b.add(12, 8, alerts_table(
        "Firing alerts", 'ALERTS{alertstate="firing", alertname=~"Tierwatch.*"}',
        "Every tierwatch alert firing now, in every cluster (docs/runbooks.md has a section "
        "per alert)."))
    _tierwatch_row(b, t)
    return b.build()


def _tierwatch_row(b: Board, t: dict[str, float]) -> None:
    """tierwatch's own health: is it polling, failing, slow, missing a collector?"""
    who = "{{instance}} {{target}}"
    b.row("tierwatch itself")
    b.add(6, 8, timeseries(
        "Polls", [Q(f"sum by (instance, cluster, target) "
                    f"(rate(tierwatch_poll_duration_seconds_count{{{S}}}[{RATE}]))", who)],
        "ops", "Polls finished per second, per tierwatch process and target: flat at "
        "1 / poll_interval; 0 means the poller is stuck (TierwatchDataStale)."))
    b.add(6, 8, timeseries(
        "Poll errors", [Q(f"sum by (instance, cluster, target) "
                          f"(rate(tierwatch_poll_errors_total{{{S}}}[{RATE}]))", who)],
        "ops", "Failed polls per second (TierwatchTargetDown, TierwatchPollsFailing).",
        thresholds=above(0, strict_resolution=PER_SECOND)))
    b.add(6, 8, timeseries(
        "Collector success",
        [Q(f"min by (kind, collector) (tierwatch_collector_success{{{S}}})",
           "{{kind}} {{collector}}")],
        "none", "1 while every target's collector of that name succeeds, 0 while one fails "
        "at every poll (TierwatchCollectorFailing).",
        thresholds=steps(CRITICAL, (1, OK)), min_=0, max_=1, fill=0))
    b.add(6, 8, timeseries(
        "Poll duration (p99)",
        [Q(f"histogram_quantile(0.99, sum by (instance, cluster, target, le) "
           f"(rate(tierwatch_poll_duration_seconds_bucket{{{S}}}[{RATE}])))", who)],
        "s", "99th percentile of the wall time of a poll, per target: close to the poll "
        "deadline means the server answers slowly."))


def postgres(t: dict[str, float]) -> dict[str, Any]:
    b = Board("tierwatch-postgres", "tierwatch / PostgreSQL",
              "Primary and replicas: role, replication lag (replica and primary view), slots, "
              "connections, buffer cache.", "postgres")
    b.row("Role and state")
    b.add(6, 4, stat(
        "Role", [Q(f"tierwatch_pg_in_recovery{{{S}}}", "{{target}}")], "none",
        "Detected role (pg_is_in_recovery): it is a value, not a label, so a failover keeps "
        "the series.",
        mappings={0: ("primary", INFO), 1: ("replica", "purple")}, text_mode="value_and_name"))
    b.add(4, 4, stat(
        "Up", [Q(f'tierwatch_up{{kind="postgres", {S}}}', "{{target}}")], "none",
        "1 if tierwatch's last poll of the server succeeded.",
        thresholds=steps(CRITICAL, (1, OK)), mappings=UP_MAP, text_mode="value_and_name"))
    b.add(3, 4, stat(
        "Streaming replicas", [Q(f"tierwatch_pg_replicas_streaming{{{S}}}", "{{target}}")],
        "none", "Rows of pg_stat_replication in state streaming, on each primary."))
    b.add(4, 4, stat(
        "WAL receiver", [Q(f"tierwatch_pg_wal_receiver_up{{{S}}}", "{{target}}")], "none",
        "Is each replica's WAL receiver streaming? (TierwatchReplicationBroken)",
        thresholds=steps(CRITICAL, (1, OK)),
        mappings={1: ("streaming", OK), 0: ("stopped", CRITICAL)}))
    b.add(3, 4, stat(
        "Replay paused", [Q(f"tierwatch_pg_replay_paused{{{S}}}", "{{target}}")], "none",
        "1 if WAL replay is paused on the replica (TierwatchReplicaReplayPaused).",
        thresholds=above(1), mappings={0: ("no", OK), 1: ("PAUSED", WARNING)}))
    b.add(4, 4, stat(
        "Oldest transaction",
        [Q(f"max(tierwatch_pg_oldest_transaction_seconds{{{S}}})", "oldest")], "s",
        "Age of the oldest open client transaction on the selected servers "
        "(TierwatchPostgresLongTransaction).",
        thresholds=above(t["pg_oldest_transaction_seconds"])))

    _topology_row(b)

    b.row("Replication")
    lag_steps = steps(OK, (t["replica_lag_warning_seconds"], WARNING),
                      (t["replica_lag_critical_seconds"], CRITICAL))
    b.add(12, 8, timeseries(
        "Replica lag (seconds)", [
            Q(f"tierwatch_pg_replica_lag_seconds{{{S}}}", "{{target}} (replica view)"),
            Q(f'tierwatch_pg_replication_lag_seconds{{{S}, stage="replay"}}',
              "{{replica}} replay (seen by {{target}})"),
        ], "s",
        "Replica view: how old the replica's visible data is (stays right when the primary "
        "is idle). Primary view: pg_stat_replication replay_lag.", thresholds=lag_steps))
    b.add(12, 8, timeseries(
        "Replica lag (bytes)", [
            Q(f"tierwatch_pg_replication_lag_bytes{{{S}}}",
              "{{replica}} {{stage}} (seen by {{target}})"),
            Q(f"tierwatch_pg_replica_lag_bytes{{{S}}}", "{{target}} (replica view)"),
        ], "bytes", "WAL not yet sent / written / flushed / replayed by each replica."))
    b.add(12, 8, timeseries(
        "Replica freshness (SLO)", [
            Q(f"tierwatch:pg_replica_fresh:ratio_1h{{{S}}}", "{{target}} 1h"),
            Q(f"tierwatch:pg_replica_fresh:ratio_6h{{{S}}}", "{{target}} 6h"),
        ], "percentunit", "Share of the last hour / 6 hours each replica was fresh (lag at "
        "most the warning threshold), against the objective "
        "(TierwatchReplicaFreshnessBudgetBurn; docs/alerts.md).",
        thresholds=below(t["replica_freshness_objective"]), max_=1, decimals=3, fill=0))
    b.add(12, 8, timeseries(
        "Replicas streaming vs configured", [
            Q(f"tierwatch_pg_replicas_streaming{{{S}}}", "{{target}} streaming"),
            Q('count by (cluster) (tierwatch:pg_replica_configured{cluster=~"$cluster"})',
              "{{cluster}} configured"),
        ], "none", "Replicas streaming from each primary, against the replicas tierwatch is "
        "configured to watch (TierwatchReplicationBroken, primary view).", fill=0))
    b.add(8, 8, timeseries(
        "WAL retained by slots",
        [Q(f"tierwatch_pg_replication_slot_retained_bytes{{{S}}}", "{{target}} {{slot}}")],
        "bytes", "WAL each replication slot holds back on the primary.",
        thresholds=above(t["replication_slot_retained_bytes"])))
    b.add(4, 8, stat(
        "Slots active",
        [Q(f"tierwatch_pg_replication_slot_active{{{S}}}", "{{slot}}")], "none",
        "An inactive slot has no consumer and keeps WAL forever "
        "(TierwatchReplicationSlotInactive).",
        thresholds=steps(WARNING, (1, OK)),
        mappings={1: ("active", OK), 0: ("inactive", WARNING)}, text_mode="value_and_name"))
    b.add(12, 8, timeseries(
        "WAL rate",
        [Q(f"deriv(tierwatch_pg_wal_position_bytes{{{S}}}[{RATE}])", "{{target}}")],
        "binBps", "WAL written (primary) or replayed (replica) per second: the slope of the "
        "WAL position, a gauge (rate() would read a lower position after a failover or a "
        "rebuild as a counter reset and draw a spike)."))

    b.row("Connections")
    b.add(12, 8, timeseries(
        "Client backends by state",
        [Q(f"sum by (cluster, target, state) (tierwatch_pg_connections{{{S}}}) > 0",
           "{{target}} {{state}}")],
        "none", "Client backends by pg_stat_activity state (states with none left out)."))
    b.add(6, 8, timeseries(
        "Connections of max_connections",
        [Q(f"sum without (state) (tierwatch_pg_connections{{{S}}}) "
           f"/ tierwatch_pg_max_connections{{{S}}}", "{{target}}")],
        "percentunit", "Client backends / max_connections "
        "(TierwatchPostgresConnectionsNearLimit).",
        thresholds=above(t["pg_connections_ratio"]), min_=0, max_=1))
    b.add(6, 8, timeseries(
        "Connections by application",
        [Q(f"tierwatch_pg_application_connections{{{S}}}", "{{target}} {{application_name}}")],
        "none", "Who holds the connections: client backends per application_name."))
    b.add(12, 8, timeseries(
        "New sessions",
        [Q(f"tierwatch:pg_sessions:rate2m{{{S}}}", "{{target}}")], "ops",
        "Sessions opened per second over 2 minutes, all databases of the server "
        "(TierwatchPostgresConnectionStorm): a pooled application opens a few a minute.",
        thresholds=above(t["pg_sessions_per_second"])))
    b.add(12, 8, timeseries(
        "Sessions ended abnormally", [
            Q(f"sum by (cluster, target) "
              f"(rate(tierwatch_pg_sessions_abandoned_total{{{S}}}[{RATE}]))",
              "{{target}} abandoned"),
            Q(f"sum by (cluster, target) (rate(tierwatch_pg_sessions_fatal_total{{{S}}}[{RATE}]))",
              "{{target}} fatal"),
            Q(f"sum by (cluster, target) "
              f"(rate(tierwatch_pg_sessions_killed_total{{{S}}}[{RATE}]))", "{{target}} killed"),
        ], "ops", "Sessions per second that ended because the client went away (abandoned), "
        "by a fatal error such as a refused login, or by pg_terminate_backend (killed)."))

    b.row("Vacuum")
    b.add(24, 8, timeseries(
        "Transaction ID age",
        [Q(f"tierwatch_pg_database_frozen_xid_age{{{S}}} "
           f"and on (cluster, target) (tierwatch_pg_in_recovery{{{S}}} == 0)",
           "{{target}} {{datname}}")],
        "short", "age(datfrozenxid) per database on the primaries: PostgreSQL stops "
        "writes near 2.1 billion (TierwatchPostgresXidAgeHigh).",
        thresholds=steps(OK, (t["pg_frozen_xid_age_warning"], WARNING),
                         (t["pg_frozen_xid_age_critical"], CRITICAL))))

    b.row("Buffer cache")
    b.add(12, 8, timeseries(
        "Buffer cache hit ratio", [
            Q(f"tierwatch:pg_cache_hit_ratio:rate5m{{{S}}}", "{{target}} (5m)"),
            Q(f"tierwatch_pg_cache_hit_ratio{{{S}}}", "{{target}} {{datname}} (per poll)"),
        ], "percentunit",
        "Block accesses served from shared_buffers (TierwatchPostgresCacheHitRatioLow uses "
        "the 5m ratio).", thresholds=below(t["pg_cache_hit_ratio"]), min_=0, max_=1, fill=0))
    b.add(12, 8, timeseries(
        "Block accesses", [
            Q(f"sum by (cluster, target) (rate(tierwatch_pg_blocks_hit_total{{{S}}}[{RATE}]))",
              "{{target}} hit"),
            Q(f"sum by (cluster, target) (rate(tierwatch_pg_blocks_read_total{{{S}}}[{RATE}]))",
              "{{target}} read"),
        ], "suffix: blocks/s", "Blocks found in shared_buffers (hit) or read from the OS."))
    return b.build()


def _topology_row(b: Board) -> None:
    """Members, roles, timeline and lag of each cluster, Patroni's view beside tierwatch's
    (CONTRACT §6; docs/patroni.md says what each reads during a switchover)."""
    b.row("Cluster topology")
    by_member = "max by (cluster, target)"
    patroni = (f"max by (cluster, target, role, state) (tierwatch_patroni_member_info{{{S}}}) "
               f"or on (cluster, target) label_replace({by_member} "
               f'(tierwatch_up{{kind="postgres", {S}}}), "role", "(not Patroni)", "", "")')
    b.add(14, 8, members_table(
        "Members", {
            "role": Q(f"{by_member} (tierwatch_pg_in_recovery{{{S}}})", instant=True,
                      table=True),
            "up": Q(f'{by_member} (tierwatch_up{{kind="postgres", {S}}})', instant=True,
                    table=True),
            "timeline": Q(f"{by_member} (tierwatch_pg_timeline_id{{{S}}})", instant=True,
                          table=True),
            "lag": Q(f"{by_member} (tierwatch_pg_replica_lag_seconds{{{S}}})", instant=True,
                     table=True),
            "_patroni": Q(patroni, instant=True, table=True),
        },
        "Every PostgreSQL member: its role as PostgreSQL reports it (pg_is_in_recovery), "
        "up, timeline, replica lag in seconds, and the role and state Patroni's /cluster "
        "gives it (a static cluster's members read \"(not Patroni)\"). After a switchover "
        "the roles swap here first: /cluster lags by up to one Patroni loop.",
        labels={"role": "Patroni role", "state": "Patroni state"},
        overrides={
            "role": _coloured({0: ("primary", INFO), 1: ("replica", "purple")}),
            "up": _coloured(UP_MAP),
            "lag": [{"id": "unit", "value": "s"}, {"id": "decimals", "value": 2}],
        }))
    b.add(4, 8, stat(
        "Primaries", [Q('tierwatch_cluster_primaries{cluster=~"$cluster"}', "{{cluster}}")],
        "none", "Members of each cluster that are up and not in recovery: 1 is right, 2+ "
        "a split brain (TierwatchClusterSplitBrain), 0 with members up no primary "
        "(TierwatchClusterNoPrimary). Either may last a second or two in a switchover.",
        thresholds=steps(CRITICAL, (WHOLE, OK)),
        mappings={0: ("none", CRITICAL), 1: ("one", OK), 2: ("TWO", CRITICAL),
                  3: ("THREE", CRITICAL)}, text_mode="value_and_name"))
    b.add(6, 8, timeseries(
        "Timeline", [Q(f"tierwatch_pg_timeline_id{{{S}}}", "{{target}}")], "none",
        "Each member's PostgreSQL timeline: +1 at every promotion, on the new primary at "
        "once and on the replicas once they follow it (TierwatchClusterFailover).",
        decimals=0, fill=0))


def pgbouncer(t: dict[str, float]) -> dict[str, Any]:
    b = Board("tierwatch-pgbouncer", "tierwatch / PgBouncer",
              "Per pool: who is active, who waits and for how long, how full the pool is, "
              "and the throughput.", "pgbouncer")
    waiting = above(t["pgbouncer_clients_waiting"], strict_resolution=WHOLE)
    saturation = above(t["pgbouncer_pool_saturation_ratio"])
    max_wait = above(t["pgbouncer_max_wait_seconds"])
    b.row("Now")
    b.add(4, 4, stat(
        "Clients waiting",
        [Q(f'sum(tierwatch_pgbouncer_clients{{{S}, state="waiting"}})', "waiting")], "none",
        "Clients queued for a server connection (TierwatchPgbouncerClientsWaiting).",
        thresholds=waiting))
    b.add(4, 4, stat(
        "Longest wait", [Q(f"max(tierwatch_pgbouncer_max_wait_seconds{{{S}}})", "max wait")],
        "s", "Age of the oldest waiting client (TierwatchPgbouncerMaxWaitHigh).",
        thresholds=max_wait))
    b.add(4, 4, stat(
        "Worst pool saturation",
        [Q(f"max(tierwatch_pgbouncer_pool_saturation_ratio{{{S}}})", "saturation")],
        "percentunit", "(Active servers + waiting clients) / pool size of the fullest pool "
        "(TierwatchPgbouncerPoolSaturated).", thresholds=saturation))
    b.add(4, 4, stat(
        "Client connections",
        [Q(f"max(tierwatch_pgbouncer_client_connections{{{S}}} "
           f"/ (tierwatch_pgbouncer_max_client_connections{{{S}}} > 0))", "of max")],
        "percentunit", "Client connections / max_client_conn "
        "(TierwatchPgbouncerClientConnectionsNearLimit).",
        thresholds=above(t["pgbouncer_client_connections_ratio"])))
    b.add(4, 4, stat(
        "Transactions",
        [Q(f"sum(rate(tierwatch_pgbouncer_transactions_total{{{S}}}[{RATE}]))", "tx/s")],
        "ops", "Transactions pooled per second."))
    b.add(4, 4, stat(
        "Server connections",
        [Q(f"sum(tierwatch_pgbouncer_server_connections{{{S}}})", "servers")], "none",
        "Server connections PgBouncer holds to PostgreSQL."))

    b.row("Pools")
    pool = "{{database}}/{{user}}"
    b.add(8, 8, timeseries(
        "Clients active", [Q(f'tierwatch_pgbouncer_clients{{{S}, state="active"}}', pool)],
        "none", "Clients linked to a server connection, per pool (SHOW POOLS cl_active)."))
    b.add(8, 8, timeseries(
        "Clients waiting", [Q(f'tierwatch_pgbouncer_clients{{{S}, state="waiting"}}', pool)],
        "none", "Clients queued for a server connection, per pool (cl_waiting).",
        thresholds=waiting))
    b.add(8, 8, timeseries(
        "Servers by state", [
            Q(f"tierwatch_pgbouncer_servers{{{S}}}", f"{pool} {{{{state}}}}"),
            Q(f"tierwatch_pgbouncer_pool_size{{{S}}}", "{{database}} pool_size"),
        ], "none", "Server connections per pool by state (sv_*), against the pool size.",
        fill=0))
    b.add(12, 8, timeseries(
        "Pool saturation", [Q(f"tierwatch_pgbouncer_pool_saturation_ratio{{{S}}}", pool)],
        "percentunit", "(Active servers + waiting clients) / pool size; 100 % and more "
        "means clients queue.", thresholds=saturation, min_=0))
    b.add(12, 8, timeseries(
        "Longest wait", [Q(f"tierwatch_pgbouncer_max_wait_seconds{{{S}}}", pool)], "s",
        "Age of the oldest waiting client, per pool (maxwait).", thresholds=max_wait))

    b.row("Throughput and waiting time")
    b.add(12, 8, timeseries(
        "Transactions and queries", [
            Q(f"rate(tierwatch_pgbouncer_transactions_total{{{S}}}[{RATE}])",
              "{{database}} transactions"),
            Q(f"rate(tierwatch_pgbouncer_queries_total{{{S}}}[{RATE}])", "{{database}} queries"),
        ], "ops", "Transactions and queries pooled per second (SHOW STATS)."))
    b.add(6, 8, timeseries(
        "Average wait",
        [Q(f"tierwatch_pgbouncer_avg_wait_seconds{{{S}}}", "{{database}}")], "s",
        "PgBouncer's own average wait of the clients it handed a server in its last "
        "stats_period (avg_wait_time): per hand-over, so right in session and transaction "
        "mode alike. (Waiting time / transactions is not: in session mode a client waits "
        "once for many transactions.)"))
    b.add(6, 8, timeseries(
        "Clients waiting (average)",
        [Q(f"sum by (cluster, target, database) "
           f"(rate(tierwatch_pgbouncer_wait_seconds_total{{{S}}}[{RATE}]))", "{{database}}")],
        "none", "Seconds of waiting per second = how many clients waited on average over "
        "the interval (Little's law); unlike cl_waiting, no queue between two polls is "
        "missed."))
    b.add(12, 8, timeseries(
        "Client connections of max_client_conn",
        [Q(f"tierwatch_pgbouncer_client_connections{{{S}}} "
           f"/ (tierwatch_pgbouncer_max_client_connections{{{S}}} > 0)", "{{target}}")],
        "percentunit", "All client connections / max_client_conn.",
        thresholds=above(t["pgbouncer_client_connections_ratio"]), min_=0, max_=1))
    b.add(12, 8, timeseries(
        "Server connections per database", [
            Q(f"tierwatch_pgbouncer_database_server_connections{{{S}}}", "{{database}} open"),
            Q(f"tierwatch_pgbouncer_pool_size{{{S}}}", "{{database}} pool_size"),
        ], "none", "Server connections open per database against its pool size.", fill=0))

    b.row("Databases")
    state = {0: ("no", OK), 1: ("YES", CRITICAL)}
    b.add(12, 4, stat(
        "Paused", [Q(f"tierwatch_pgbouncer_database_paused{{{S}}}", "{{database}}")], "none",
        "1 while the database is paused (PAUSE): its clients' queries hang "
        "(TierwatchPgbouncerDatabasePaused).",
        thresholds=above(1, CRITICAL), mappings=state, text_mode="value_and_name"))
    b.add(12, 4, stat(
        "Disabled", [Q(f"tierwatch_pgbouncer_database_disabled{{{S}}}", "{{database}}")],
        "none", "1 while the database is disabled (DISABLE): new clients are refused "
        "(TierwatchPgbouncerDatabaseDisabled).",
        thresholds=above(1, CRITICAL), mappings=state, text_mode="value_and_name"))
    return b.build()


def redis_board(t: dict[str, float]) -> dict[str, Any]:
    b = Board("tierwatch-redis", "tierwatch / Redis",
              "Is the cache doing its job: hit ratio, lookups, evictions and expirations, "
              "memory against maxmemory, fragmentation, clients.", "redis")
    hit = below(t["redis_cache_hit_ratio"])
    evicting = above(t["redis_evictions_per_second"], strict_resolution=PER_SECOND)
    b.row("Now")
    b.add(4, 4, stat(
        "Hit ratio (5m)", [Q(f"min(tierwatch:redis_cache_hit_ratio:rate5m{{{S}}})", "5m")],
        "percentunit", "Hits / lookups over 5 minutes (TierwatchRedisCacheHitRatioLow).",
        thresholds=hit))
    b.add(4, 4, stat(
        "Memory of maxmemory",
        [Q(f"max(tierwatch_redis_memory_used_bytes{{{S}}} "
           f"/ (tierwatch_redis_memory_max_bytes{{{S}}} > 0))", "used")],
        "percentunit", "used_memory / maxmemory. An allkeys-* cache sits near 100 % by "
        "design (TierwatchRedisMemoryNearLimit leaves it out).",
        thresholds=above(t["redis_memory_ratio"])))
    b.add(4, 4, stat(
        "Evictions",
        [Q(f"sum(rate(tierwatch_redis_evicted_keys_total{{{S}}}[{RATE}]))", "evictions")],
        "suffix: keys/s", "Keys evicted per second (TierwatchRedisEvicting).",
        thresholds=evicting, decimals=2))
    b.add(4, 4, stat(
        "Rejected connections (5m)",
        [Q(f"sum(increase(tierwatch_redis_rejected_connections_total{{{S}}}[5m]))",
           "rejected")],
        "none", "Connections refused at maxclients in the last 5 minutes "
        "(TierwatchRedisRejectingConnections).",
        thresholds=above(0, strict_resolution=WHOLE),
        decimals=0))
    b.add(4, 4, stat(
        "Clients of maxclients",
        [Q(f"max(tierwatch_redis_connected_clients{{{S}}} "
           f"/ (tierwatch_redis_max_clients{{{S}}} > 0))", "of maxclients")], "percentunit",
        "Connected clients / maxclients of the fullest server (TierwatchRedisClientsNearLimit; "
        "at 100 % TierwatchRedisRejectingConnections).",
        thresholds=above(t["redis_clients_ratio"])))
    b.add(4, 4, stat(
        "Fragmentation", [Q(f"max(tierwatch_redis_memory_fragmentation_ratio{{{S}}})", "ratio")],
        "none", "Resident memory / used memory (mem_fragmentation_ratio).", decimals=2))

    b.row("Cache")
    b.add(12, 8, timeseries(
        "Hit ratio", [
            Q(f"tierwatch:redis_cache_hit_ratio:rate5m{{{S}}}", "{{target}} (5m)"),
            Q(f"tierwatch_redis_cache_hit_ratio{{{S}}}", "{{target}} (per poll)"),
        ], "percentunit", "Hits / (hits + misses): over 5 minutes, and between two polls.",
        thresholds=hit, min_=0, max_=1, fill=0))
    b.add(12, 8, timeseries(
        "Hits and misses", [
            Q(f"rate(tierwatch_redis_keyspace_hits_total{{{S}}}[{RATE}])", "{{target}} hits"),
            Q(f"rate(tierwatch_redis_keyspace_misses_total{{{S}}}[{RATE}])",
              "{{target}} misses"),
        ], "ops", "Key lookups per second that found (hits) or missed (misses) their key."))
    b.add(12, 8, timeseries(
        "Evictions and expirations", [
            Q(f"rate(tierwatch_redis_evicted_keys_total{{{S}}}[{RATE}])", "{{target}} evicted"),
            Q(f"rate(tierwatch_redis_expired_keys_total{{{S}}}[{RATE}])", "{{target}} expired"),
        ], "suffix: keys/s", "Keys removed per second: evicted for maxmemory, or expired by "
        "their TTL.", thresholds=evicting))
    b.add(12, 8, timeseries(
        "Keys", [
            Q(f"tierwatch_redis_keys{{{S}}}", "{{target}} {{db}}"),
            Q(f"tierwatch_redis_keys_expiring{{{S}}}", "{{target}} {{db}} with TTL"),
        ], "none", "Keys per database, and how many of them carry a TTL."))

    b.row("Memory and clients")
    b.add(12, 8, timeseries(
        "Memory", [
            Q(f"tierwatch_redis_memory_used_bytes{{{S}}}", "{{target}} used"),
            Q(f"tierwatch_redis_memory_rss_bytes{{{S}}}", "{{target}} rss"),
            Q(f"tierwatch_redis_memory_max_bytes{{{S}}} > 0", "{{target}} maxmemory"),
        ], "bytes", "used_memory and resident memory against maxmemory.", fill=0))
    b.add(12, 8, timeseries(
        "Fragmentation ratio",
        [Q(f"tierwatch_redis_memory_fragmentation_ratio{{{S}}}", "{{target}}")], "none",
        "Resident / used memory: well above 1 is fragmentation, below 1 is swapping.",
        decimals=2))
    b.add(12, 8, timeseries(
        "Clients", [
            Q(f"tierwatch_redis_connected_clients{{{S}}}", "{{target}} connected"),
            Q(f"tierwatch_redis_blocked_clients{{{S}}}", "{{target}} blocked"),
        ], "none", "Connected clients, and those waiting in a blocking command."))
    b.add(12, 8, timeseries(
        "Commands",
        [Q(f"rate(tierwatch_redis_commands_processed_total{{{S}}}[{RATE}])", "{{target}}")],
        "ops", "Commands processed per second."))

    b.row("Server")
    b.add(8, 3, stat(
        "Server", [Q(f"tierwatch_redis_server_info{{{S}}}", "{{server}} {{version}}")], "none",
        "Server software and version.", text_mode="name", graph=False))
    b.add(8, 3, stat(
        "maxmemory policy",
        [Q(f"tierwatch_redis_maxmemory_policy_info{{{S}}}", "{{policy}}")], "none",
        "What Redis does at maxmemory: allkeys-* evicts any key, volatile-* only keys with "
        "a TTL, noeviction rejects writes.", text_mode="name", graph=False))
    b.add(8, 3, stat(
        "Uptime", [Q(f"tierwatch_redis_uptime_seconds{{{S}}}", "{{target}}")], "s",
        "Seconds since the server started: a drop is a restart, which empties the cache "
        "(TierwatchRedisRestarted).", graph=False))
    b.add(24, 3, stat(
        "Replication",
        [Q(f"tierwatch_redis_master_link_up{{{S}}} "
           f"or on (cluster, target) (tierwatch_redis_is_replica{{{S}}} == 0) + 2",
           "{{target}}")], "none",
        "Per server: a master, or a replica with its link to the master up or DOWN "
        "(TierwatchRedisReplicaLinkDown).",
        thresholds=steps(CRITICAL, (1, OK)),
        mappings={0: ("link DOWN", CRITICAL), 1: ("replica, link up", OK), 2: ("master", INFO)},
        text_mode="value_and_name"))
    return b.build()


BUILDERS = (overview, postgres, pgbouncer, redis_board)


# --------------------------------------------------------------------------- evaluation
# What Grafana does before it sends a query, for the panel test and the previews.

_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<match>.+),\s*)?(?P<label>\w+)\)$")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def variable_query(variable: dict[str, Any]) -> tuple[str | None, str]:
    """(series selector or None, label) of a `label_values(...)` template variable."""
    m = _LABEL_VALUES.match(str(variable["query"]).strip())
    if m is None:
        raise ValueError(f"variable {variable['name']}: not a label_values() query")
    return m.group("match"), m.group("label")


def regex_value(values: Sequence[str]) -> str:
    """A multi-value selection as Grafana puts it into a `=~"..."` matcher."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}-])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(text: str, variables: dict[str, str], rate_interval: str = "15s",
                interval: str = "5s", range_: str = "5m") -> str:
    """Replaces $name, ${name} and [[name]] like Grafana (built-ins included)."""
    values = {"__rate_interval": rate_interval, "__interval": interval, "__range": range_,
              **variables}

    def one(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        if name not in values:
            raise KeyError(f"undefined variable ${name} in {text!r}")
        return values[name]

    return _VARIABLE.sub(one, text)


def queries(board: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of every panel."""
    return [(panel, target) for panel in board["panels"] if panel["type"] != "row"
            for target in panel.get("targets", [])]


def build_all(thresholds: dict[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """File name -> dashboard."""
    t = thresholds if thresholds is not None else load_thresholds()
    boards = [build(t) for build in BUILDERS]
    return {f"{board['uid']}.json": board for board in boards}


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, board in build_all().items():
        path = out / name
        path.write_text(render(board))
        written.append(path)
    return written


def differences(out: Path = DASHBOARDS_DIR) -> list[str]:
    """Names of the dashboard files in `out` that differ from the generator's output."""
    return [name for name, board in build_all().items()
            if not (out / name).is_file() or (out / name).read_text() != render(board)]


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR)
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the files in --out are not up to date")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.check:
        stale = differences(args.out)
        for name in stale:
            print(f"{args.out / name}: out of date; run python scripts/dashboards.py",
                  file=sys.stderr)
        return 1 if stale else 0
    for path in write(args.out):
        print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The HTML status page at `/`: the `/cluster/<name>` reports of every cluster, as tables.

The server renders the whole page, so it reads right without JavaScript; a small inline
script then re-reads `/cluster/<name>` (same origin, so it works offline and behind basic
auth: the browser resends the credentials it holds) and rebuilds each table with
`textContent`, never markup. The script is a constant, so the Content-Security-Policy allows
it by its hash: no `unsafe-inline`, nothing from elsewhere. The cell texts below and the
script's must stay the same function of the report (tests/browser compares them).
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from typing import Any
from urllib.parse import quote

from exporter import __version__, routing
from exporter.model import TargetId
from exporter.snapshot import TargetSnapshot

Report = Mapping[str, Any]  # one /cluster/<name> body (CONTRACT §5)
FIELDS = ("target", "kind", "state", "role", "lag", "traffic", "detail", "age", "reason")
HEADINGS = ("Target", "Kind", "State", "Role", "Replica lag", "Takes traffic now",
            "Details", "Data age", "Why not healthy")
DASH = "—"

SCRIPT = """"use strict";
(function () {
  var every = Number(document.body.dataset.refresh) || 5000;
  var note = document.getElementById("refreshed");
  function fixed(x, unit) { return x == null ? "—" : x.toFixed(1) + " " + unit; }
  function pct(x) { return x == null ? "—" : fixed(x * 100, "%"); }
  function bytes(x) {
    if (x == null) { return "—"; }
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (x >= 1024 && i < units.length - 1) { x /= 1024; i += 1; }
    return i === 0 ? x.toFixed(0) + " B" : fixed(x, units[i]);
  }
  function state(t) { return t.up ? (t.fresh ? "up" : "up, data stale") : "down"; }
  function traffic(t) {
    if (t.kind !== "postgres") { return "—"; }
    var what = t.role === "primary" ? "writes: " : t.role === "replica" ? "reads: " : "";
    return what + (t.healthy ? "yes" : "no");
  }
  function detail(t) {
    if (t.kind === "pgbouncer") {
      return (t.clients_waiting == null ? "—" : t.clients_waiting) +
        " clients waiting, worst pool saturation " + pct(t.max_pool_saturation);
    }
    if (t.kind === "redis") {
      var used = t.memory_used_bytes, most = t.memory_max_bytes;
      var limit = used == null ? "" : most ? " of " + bytes(most) + " (" + pct(used / most) +
        ")" : ", no maxmemory";
      return "hit ratio " + pct(t.hit_ratio) + ", memory " + bytes(used) + limit;
    }
    return t.role === "replica" ? bytes(t.lag_bytes) + " of WAL not replayed" : "";
  }
  var cells = {
    target: function (t) { return t.target; }, kind: function (t) { return t.kind; },
    state: state, role: function (t) { return t.role || "—"; },
    lag: function (t) { return fixed(t.lag_seconds, "s"); }, traffic: traffic,
    detail: detail, age: function (t) { return fixed(t.poll_age_seconds, "s"); },
    reason: function (t) { return t.healthy ? "" : t.reason; }
  };
  function summary(ts) {
    return ts.filter(function (t) { return t.healthy; }).length + " of " + ts.length +
      " targets healthy";
  }
  function row(t) {
    var tr = document.createElement("tr");
    tr.dataset.target = t.target;
    tr.className = t.healthy ? "ok" : t.up ? "warn" : "down";
    Object.keys(cells).forEach(function (field) {
      var td = tr.appendChild(document.createElement("td"));
      td.dataset.field = field;
      td.textContent = cells[field](t);
    });
    return tr;
  }
  function refresh(section) {
    var url = location.origin + "/cluster/" + encodeURIComponent(section.dataset.cluster);
    return fetch(url, {cache: "no-store", credentials: "same-origin"}).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status + " from " + url); }
      return r.json();
    }).then(function (report) {
      section.querySelector("[data-field=primary]").textContent = report.primary || "none";
      section.querySelector("[data-field=summary]").textContent = summary(report.targets);
      section.querySelector("tbody").replaceChildren(...report.targets.map(row));
    });
  }
  function loop() {
    var sections = Array.prototype.slice.call(document.querySelectorAll("[data-cluster]"));
    Promise.all(sections.map(refresh)).then(function () {
      note.textContent = "Updated " + new Date().toLocaleTimeString() + ", every " +
        every / 1000 + " s.";
      document.body.classList.remove("failing");
    }, function (err) {
      note.textContent = "Not updated since the last success: " + err.message + ".";
      document.body.classList.add("failing");
    }).then(function () { setTimeout(loop, every); });
  }
  setTimeout(loop, every);
})();
"""

STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#111}
table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border-bottom:1px solid #ccc;padding:.3em .7em;text-align:left;vertical-align:top}
th,td{white-space:nowrap}td[data-field=detail],td[data-field=reason]{white-space:normal}
tr.ok td[data-field=state]{color:#065f15}tr.warn td[data-field=state]{color:#8a5a00}
tr.down td[data-field=state]{color:#b00020;font-weight:bold}
body.failing #refreshed{color:#b00020;font-weight:bold}nav a{margin-right:1em}
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# only the two constant blocks above may run or style; fetch may reach this origin only
CSP = (f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; "
       "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def fixed(value: float | None, unit: str) -> str:
    """One decimal, halves away from zero as JavaScript's toFixed rounds the same double."""
    if value is None or not math.isfinite(value):
        return DASH
    return f"{Decimal(value).quantize(Decimal('0.1'), ROUND_HALF_UP)} {unit}"


def pct(ratio: float | None) -> str:
    return DASH if ratio is None else fixed(ratio * 100, "%")


def size(value: float | None) -> str:
    if value is None:
        return DASH
    units, i = ("B", "KiB", "MiB", "GiB", "TiB"), 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{Decimal(value).quantize(Decimal('1'), ROUND_HALF_UP)} B" if i == 0 else \
        fixed(value, units[i])


def _state(t: Report) -> str:
    if not t["up"]:
        return "down"
    return "up" if t["fresh"] else "up, data stale"


def _traffic(t: Report) -> str:
    if t["kind"] != "postgres":
        return DASH
    what = {"primary": "writes: ", "replica": "reads: "}.get(t["role"] or "", "")
    return what + ("yes" if t["healthy"] else "no")


def _detail(t: Report) -> str:
    if t["kind"] == "pgbouncer":
        waiting = t.get("clients_waiting")
        return (f"{DASH if waiting is None else _number(waiting)} clients waiting, "
                f"worst pool saturation {pct(t.get('max_pool_saturation'))}")
    if t["kind"] == "redis":
        used, most = t.get("memory_used_bytes"), t.get("memory_max_bytes")
        limit = "" if used is None else \
            f" of {size(most)} ({pct(used / most)})" if most else ", no maxmemory"
        return f"hit ratio {pct(t.get('hit_ratio'))}, memory {size(used)}{limit}"
    return f"{size(t.get('lag_bytes'))} of WAL not replayed" if t["role"] == "replica" else ""


def _number(value: float) -> str:
    # JavaScript prints a whole double without ".0"
    return str(int(value)) if float(value).is_integer() else repr(value)


def cell_texts(t: Report) -> dict[str, str]:
    """The text of each cell of one target's row, as the page's script writes it too."""
    return {
        "target": t["target"], "kind": t["kind"], "state": _state(t),
        "role": t["role"] or DASH, "lag": fixed(t["lag_seconds"], "s"),
        "traffic": _traffic(t), "detail": _detail(t),
        "age": fixed(t["poll_age_seconds"], "s"),
        "reason": "" if t["healthy"] else t["reason"],
    }


def summary(targets: Sequence[Report]) -> str:
    return f"{sum(1 for t in targets if t['healthy'])} of {len(targets)} targets healthy"


def _row(t: Report) -> str:
    css = "ok" if t["healthy"] else "warn" if t["up"] else "down"
    cells = "".join(f'<td data-field="{field}">{escape(text)}</td>'
                    for field, text in cell_texts(t).items())
    return f'<tr data-target="{escape(t["target"])}" class="{css}">{cells}</tr>\n'


def _section(report: Report) -> str:
    name = report["cluster"]
    href = escape("/cluster/" + quote(name, safe=""))
    heads = "".join(f"<th>{h}</th>" for h in HEADINGS)
    rows = "".join(_row(t) for t in report["targets"])
    return (f'<section data-cluster="{escape(name)}">\n'
            f"<h2>Cluster {escape(name)}</h2>\n"
            f'<p>Primary: <span data-field="primary">{escape(report["primary"] or "none")}'
            f'</span>. <span data-field="summary">{summary(report["targets"])}</span>. '
            f'JSON: <a href="{href}">{href}</a></p>\n'
            f"<table><thead><tr>{heads}</tr></thead>\n<tbody>\n{rows}</tbody></table>\n"
            "</section>\n")


def render(reports: Iterable[Report], refresh_seconds: float, now: float | None = None
           ) -> bytes:
    """The page for these cluster reports; the script re-reads them every refresh_seconds."""
    when = time.gmtime(time.time() if now is None else now)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", when)
    sections = "".join(_section(r) for r in reports) or "<p>No cluster is configured.</p>\n"
    refresh_ms = max(500, round(refresh_seconds * 1000))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>tierwatch status</title>\n<link rel="icon" href="data:,">\n'
        f"<style>{STYLE}</style>\n"
        # without JavaScript the browser reloads the whole page instead
        f'<noscript><meta http-equiv="refresh" content="{max(1, refresh_ms // 1000)}"></noscript>\n'
        f'</head><body data-refresh="{refresh_ms}">\n'
        f"<h1>tierwatch {escape(__version__)}: the tier now</h1>\n"
        '<nav><a href="/metrics">/metrics</a><a href="/healthz">/healthz</a>'
        '<a href="/readyz">/readyz</a></nav>\n'
        f'<p id="refreshed">Rendered {stamp}.</p>\n{sections}'
        "<footer><p>Read routing checks, answered from the same data: "
        "<code>/primary/&lt;cluster&gt;/&lt;target&gt;</code>, "
        "<code>/replica/&lt;cluster&gt;/&lt;target&gt;?max_lag=1s</code>, "
        "<code>/read-only/&lt;cluster&gt;/&lt;target&gt;</code>, "
        "<code>/cluster/&lt;cluster&gt;</code>.</p></footer>\n"
        f"<script>{SCRIPT}</script>\n</body></html>\n"
    ).encode()


def refresh_interval(intervals: Iterable[float]) -> float:
    """How often the page re-reads: twice per shortest poll interval (a change shows within
    one poll of being published), between 0.5 s and 15 s."""
    shortest = min((i for i in intervals if i > 0), default=15.0)
    return min(15.0, max(0.5, shortest / 2))


def page(store: routing.StoreLike, max_lag: float, max_staleness: float | None,
         now: float | None = None) -> bytes:
    """The page of every configured cluster, judged from the store's snapshots alone."""
    now = time.time() if now is None else now
    snapshots = store.snapshots
    # one pass to group by cluster: handing each report the whole store would scan every
    # target once per cluster, O(targets x clusters)
    grouped: dict[str, tuple[dict[TargetId, TargetSnapshot], list[TargetId]]] = {}
    for target in store.expected | snapshots.keys():
        own, expected = grouped.setdefault(target.cluster, ({}, []))
        expected.append(target)
        if target in snapshots:
            own[target] = snapshots[target]
    reports = []
    for name in sorted(grouped):
        own, expected = grouped[name]
        report = routing.cluster_report(own, name, max_lag, max_staleness, now, expected)
        if report is not None:
            reports.append(report)
    return render(reports, refresh_interval(s.interval for s in snapshots.values()), now)

"""The status page's HTML: every field of the reports, escaped, and a CSP that fits it."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from types import MappingProxyType
from typing import Any

from exporter import catalogue as c
from exporter import statuspage
from exporter.model import Kind, TargetId
from exporter.snapshot import TargetSnapshot

HOSTILE = "<script>alert(1)</script>"
NOW = 1_700_000_000.0


def entry(target: str, kind: str = "postgres", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cluster": "main", "target": target, "kind": kind, "role": None, "up": True,
        "fresh": True, "lag_seconds": None, "lag_bytes": None, "poll_age_seconds": 0.4,
        "healthy": True, "reason": "up"}
    return {**base, **fields}


def report(*targets: dict[str, Any], cluster: str = "main",
           primary: str | None = "primary") -> dict[str, Any]:
    return {"cluster": cluster, "primary": primary, "targets": list(targets)}


TIER = report(
    entry("primary", role="primary", reason="primary"),
    entry("replica-1", role="replica", lag_seconds=0.25, lag_bytes=2048,
          reason="replica lag 0.250s within 1s"),
    entry("replica-2", role="replica", lag_seconds=3.5, lag_bytes=5 * 2**20, healthy=False,
          reason="replica lag 3.500s over 1s"),
    entry("bouncer", "pgbouncer", clients_waiting=3, max_pool_saturation=1.25),
    entry("cache", "redis", hit_ratio=0.9876, memory_used_bytes=3 * 2**20,
          memory_max_bytes=64 * 2**20),
    entry("sessions", "redis", up=False, fresh=False, healthy=False, reason="last poll failed",
          hit_ratio=None, memory_used_bytes=None, memory_max_bytes=None, poll_age_seconds=2.0),
)


class Page(HTMLParser):
    """The rows of the page: target name -> {data-field: text}, and the script bodies."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.links: list[str] = []
        self._row: dict[str, str] | None = None
        self._field: str | None = None
        self._raw: str | None = None
        self.feed(body.decode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "data-target" in a:
            self._row = self.rows.setdefault(a["data-target"] or "", {})
        elif tag == "td" and self._row is not None:
            self._field = a["data-field"]
            self._row[self._field or ""] = ""
        elif tag in ("script", "style"):
            self._raw = tag
            (self.scripts if tag == "script" else self.styles).append("")
        elif tag == "a":
            self.links.append(a["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._field = None
        elif tag == "tr":
            self._row = None
        elif tag in ("script", "style"):
            self._raw = None

    def handle_data(self, data: str) -> None:
        if self._raw == "script":
            self.scripts[-1] += data
        elif self._raw == "style":
            self.styles[-1] += data
        elif self._row is not None and self._field is not None:
            self._row[self._field] += data


def test_every_target_shows_its_kind_state_role_lag_and_details_in_words() -> None:
    rows = Page(statuspage.render([TIER], 1.0, NOW)).rows
    assert rows["primary"] == {
        "target": "primary", "kind": "postgres", "state": "up", "role": "primary",
        "lag": "—", "traffic": "writes: yes", "detail": "", "age": "0.4 s", "reason": ""}
    # 0.25 is a tie: rounded away from zero as JavaScript's toFixed does
    assert rows["replica-1"]["lag"] == "0.3 s"
    assert rows["replica-1"]["traffic"] == "reads: yes"
    assert rows["replica-1"]["detail"] == "2.0 KiB of WAL not replayed"
    assert rows["replica-2"]["traffic"] == "reads: no"
    assert rows["replica-2"]["reason"] == "replica lag 3.500s over 1s"
    assert rows["bouncer"]["detail"] == "3 clients waiting, worst pool saturation 125.0 %"
    assert rows["cache"]["detail"] == "hit ratio 98.8 %, memory 3.0 MiB of 64.0 MiB (4.7 %)"
    assert rows["sessions"]["state"] == "down"
    assert rows["sessions"]["detail"] == "hit ratio —, memory —"
    assert rows["sessions"]["age"] == "2.0 s"


def test_stale_data_and_redis_without_maxmemory_say_so() -> None:
    rows = Page(statuspage.render([report(
        entry("cache", "redis", fresh=False, healthy=False, reason="data is 9.0s old",
              hit_ratio=None, memory_used_bytes=512, memory_max_bytes=0))], 1.0, NOW)).rows
    assert rows["cache"]["state"] == "up, data stale"
    assert rows["cache"]["detail"] == "hit ratio —, memory 512 B, no maxmemory"


def test_names_from_config_and_servers_show_as_text_never_markup() -> None:
    hostile_cluster = 'a"b&<c>'
    body = statuspage.render([report(entry(HOSTILE, reason=HOSTILE, up=False, healthy=False),
                                     cluster=hostile_cluster, primary=HOSTILE)], 1.0, NOW)
    page = Page(body)
    assert page.rows[HOSTILE]["target"] == HOSTILE
    assert page.rows[HOSTILE]["reason"] == HOSTILE
    assert HOSTILE.encode() not in body
    assert body.count(b"<script") == 1  # the page's own, nothing injected
    assert b'data-cluster="a&quot;b&amp;&lt;c&gt;"' in body
    assert "/cluster/a%22b%26%3Cc%3E" in page.links


def test_links_every_endpoint_and_each_cluster() -> None:
    body = statuspage.render([TIER, report(entry("primary"), cluster="two words")], 1.0, NOW)
    links = Page(body).links
    for path in ("/metrics", "/healthz", "/readyz", "/cluster/main", "/cluster/two%20words"):
        assert path in links


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_csp_allows_exactly_the_inline_script_and_style_of_the_page() -> None:
    page = Page(statuspage.render([TIER], 1.0, NOW))
    csp = dict(d.strip().split(" ", 1) for d in statuspage.CSP.split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == _hash(page.scripts[0])
    assert csp["style-src"] == _hash(page.styles[0])
    assert csp["connect-src"] == "'self'"
    assert "unsafe" not in statuspage.CSP
    # the script builds cells with textContent only: never markup from data
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(",
                         statuspage.SCRIPT)


def test_refresh_follows_the_shortest_poll_interval_within_bounds() -> None:
    assert statuspage.refresh_interval([15.0, 1.0]) == 0.5
    assert statuspage.refresh_interval([10.0]) == 5.0
    assert statuspage.refresh_interval([600.0]) == 15.0
    assert statuspage.refresh_interval([]) == 7.5
    assert b'data-refresh="5000"' in statuspage.render([], 5.0, NOW)


def test_number_formats_match_the_scripts_rules() -> None:
    assert statuspage.fixed(None, "s") == "—"
    assert statuspage.fixed(float("nan"), "s") == "—"
    assert statuspage.fixed(1.05, "s") == "1.1 s"  # 1.05 is just above 1.05 as a double
    assert statuspage.fixed(-0.01, "s") == "-0.0 s"
    assert statuspage.size(1023) == "1023 B"
    assert statuspage.size(1536) == "1.5 KiB"
    assert statuspage.size(5 * 2**40) == "5.0 TiB"
    assert statuspage.pct(0.5) == "50.0 %"


def _snapshot(target: TargetId, metrics: tuple[Any, ...], up: bool = True) -> TargetSnapshot:
    return TargetSnapshot(target=target, up=up, polled_at=NOW - 0.5, metrics=metrics,
                          daemon_metrics=(c.UP(1 if up else 0, target.kind.value),),
                          interval=1.0)


class _Store:
    def __init__(self, snaps: list[TargetSnapshot], expected: set[TargetId]) -> None:
        self.snapshots = MappingProxyType({s.target: s for s in snaps})
        self.expected = frozenset(expected)


def test_page_from_snapshots_lists_configured_targets_before_their_first_poll() -> None:
    primary = TargetId("main", "primary", Kind.POSTGRES)
    replica = TargetId("main", "replica", Kind.POSTGRES)
    bouncer = TargetId("main", "bouncer", Kind.PGBOUNCER)
    cache = TargetId("other", "cache", Kind.REDIS)
    store = _Store([
        _snapshot(primary, (c.PG_IN_RECOVERY(0),)),
        _snapshot(replica, (c.PG_IN_RECOVERY(1), c.PG_REPLICA_LAG_SECONDS(0.2),
                            c.PG_REPLICA_LAG_BYTES(0))),
        _snapshot(bouncer, (c.BOUNCER_CLIENTS(2, "app", "u", "waiting"),
                            c.BOUNCER_CLIENTS(5, "app", "u", "active"),
                            c.BOUNCER_SATURATION(0.5, "app", "u"))),
    ], {primary, replica, bouncer, cache})
    body = statuspage.page(store, max_lag=1.0, max_staleness=None, now=NOW)
    rows = Page(body).rows
    assert rows["primary"]["role"] == "primary" and rows["primary"]["traffic"] == "writes: yes"
    assert rows["replica"]["lag"] == "0.2 s" and rows["replica"]["traffic"] == "reads: yes"
    assert rows["bouncer"]["detail"] == "2 clients waiting, worst pool saturation 50.0 %"
    assert rows["cache"]["state"] == "down" and rows["cache"]["reason"] == "not polled yet"
    assert b'data-cluster="main"' in body and b'data-cluster="other"' in body
    assert b'data-refresh="500"' in body

"""The routing endpoints' requests and answers: path and query in, status and body out.

No I/O and no clock: httpserver.py passes the store, the current settings and the time, so
every answer is judged from the snapshot alone (a check never reaches a monitored server).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from exporter.durations import parse_duration
from exporter.model import Kind
from exporter.routing import CHECKS, Check, StoreLike, cluster_report, find_target, health

PREFIXES = tuple(f"/{name}/" for name in (*CHECKS, "cluster"))
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
_NAME_SHOWN = 64  # a name echoed in a reason is cut here: the body stays one short line


class Limits(Protocol):
    """The routing settings an answer needs (config.Routing has them)."""

    @property
    def max_lag(self) -> float: ...

    @property
    def max_staleness(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str = TEXT


def is_routing_path(path: str) -> bool:
    """True for the paths this module answers (the query string already cut off)."""
    return path.startswith(PREFIXES)


def _line(status: int, reason: str) -> Answer:
    return Answer(status, (reason + "\n").encode())


def _json(status: int, body: dict[str, Any]) -> Answer:
    return Answer(status, (json.dumps(body, separators=(",", ":")) + "\n").encode(), JSON)


def _shown(name: str) -> str:
    # repr() escapes control characters, so a crafted name cannot break the line
    return repr(name if len(name) <= _NAME_SHOWN else name[:_NAME_SHOWN] + "...")


def _max_lag(query: str, default: float) -> float | None:
    """The ?max_lag= of the query (the last one if repeated); None when it is no duration."""
    values = parse_qs(query, keep_blank_values=True).get("max_lag")
    if not values:
        return default
    try:
        return parse_duration(values[-1])
    except ValueError:
        return None


def _segments(path: str) -> list[str]:
    parts = path.split("/")[1:]  # split before unquoting: %2F stays inside a name
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing slash is forgiven
    return [unquote(part) for part in parts]


def answer(raw_path: str, store: StoreLike, limits: Limits, now: float) -> Answer:
    """The answer to GET/HEAD/OPTIONS of a routing path (see is_routing_path)."""
    path, _, query = raw_path.partition("?")
    parts = _segments(path)
    max_lag = _max_lag(query, limits.max_lag)
    if max_lag is None:
        return _line(400, "max_lag: must be a duration such as 250ms, 1s, 1.5 or 2m")
    if parts[0] == "cluster":
        if len(parts) != 2 or not parts[1]:
            return _line(404, "not found: use /cluster/<cluster>")
        report = cluster_report(store, parts[1], max_lag, limits.max_staleness, now)
        if report is None:
            return _line(404, f"unknown cluster {_shown(parts[1])}")
        return _json(200, report)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return _line(404, f"not found: use /{parts[0]}/<cluster>/<target>")
    check: Check = parts[0]  # type: ignore[assignment]  # is_routing_path admitted it
    return _health(store, check, parts[1], parts[2], max_lag, limits, now)


def _health(store: StoreLike, check: Check, cluster: str, name: str, max_lag: float,
            limits: Limits, now: float) -> Answer:
    target = find_target(store, cluster, name)
    if target is None:
        if _has_cluster(store, cluster):
            return _line(404, f"unknown target {_shown(name)} in cluster {_shown(cluster)}")
        return _line(404, f"unknown cluster {_shown(cluster)}")
    if target.kind is not Kind.POSTGRES:
        return _line(404, f"{_shown(name)} in cluster {_shown(cluster)} is a "
                          f"{target.kind.value} target, not PostgreSQL")
    body = health(target, store.snapshots.get(target), check, max_lag,
                  limits.max_staleness, now)
    return _json(200 if body["healthy"] else 503, body)


def _has_cluster(store: StoreLike, cluster: str) -> bool:
    return any(t.cluster == cluster for t in store.expected) or any(
        t.cluster == cluster for t in store.snapshots)

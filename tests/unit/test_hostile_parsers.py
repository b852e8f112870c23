"""Hostile server output: whatever rows, SHOW cells or INFO text a server sends, a poll ends in
a snapshot (never an exception), and the exposition holds only catalogued names with valid
label values.

The answers start from what the real servers sent (tests/data/) and are then mangled: NULLs,
text where a number belongs and numbers where text belongs, negative, huge, NaN and infinite
values, bytes, lists, missing and extra columns, unicode names, rows added and dropped, and
query errors. They go through the real poll path — TargetPoller.poll() with only the network
replaced — then through render() and back through prometheus_client's parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from unittest import mock

import psycopg
import redis.exceptions
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from redis._parsers.helpers import parse_info

from exporter import catalogue as c
from exporter.clusterstate import ClusterState
from exporter.collectors import PGBOUNCER_COLLECTORS, POSTGRES_COLLECTORS, REDIS_COLLECTORS
from exporter.collectors.pg_status import STATUS_SQL
from exporter.config import Settings
from exporter.model import Kind, Metric, PollContext, Role, TargetId
from exporter.poller import TargetPoller
from exporter.render import render
from exporter.replication import Observation
from exporter.snapshot import TargetSnapshot
from exporter.sources import postgres as postgres_source
from exporter.sources import sql as sql_source
from exporter.sources.base import guarded as _guard
from tests.support import REPO

DATA = REPO / "tests" / "data"
PG_ROWS = json.loads((DATA / "pg_rows.json").read_text())
BOUNCER = [json.loads(p.read_text()) for p in sorted(DATA.glob("pgbouncer_*.json"))]
INFO_TEXTS = [p.read_text() for p in sorted(DATA.glob("redis_info_*.txt"))]

# the query text each recorded pg_rows.json section answers, in POSTGRES_COLLECTORS order
PG_SECTIONS = dict(zip(
    ("status", "activity", "database", "replication", "slots", "replica", "timeline"),
    (col.queries(PollContext(TargetId("m", "t", Kind.POSTGRES), now=0.0))[0]
     for col in POSTGRES_COLLECTORS),
    strict=True,
))
assert PG_SECTIONS["status"] == STATUS_SQL
PG_STATES = [(state, role) for state, roles in PG_ROWS.items() if state != "version"
             for role in roles if isinstance(roles[role], dict)]

CONFIG = Settings(
    poll_interval=1.0,
    clusters=[{
        "name": "main",
        "postgres": [{"name": "primary", "dsn": "postgresql://monitor@127.0.0.1:1/postgres"},
                     {"name": "replica-1", "dsn": "postgresql://monitor@127.0.0.1:2/postgres"}],
        "pgbouncer": [{"name": "bouncer", "dsn": "postgresql://monitor@127.0.0.1:3/pgbouncer"}],
        "redis": [{"name": "cache", "url": "redis://monitor@127.0.0.1:4/0"}],
    }],
)
CLUSTER = CONFIG.clusters[0]

# --------------------------------------------------------------------------- strategies

ODD_STRINGS = ["", " ", "nan", "NaN", "inf", "-inf", "1e400", "-0", "0x10", "NULL", "12",
               "-1", "1.5", "١٢", "½", "1_000", "streaming", "up", "slave", "db0", "\x00",
               'quo"te', "back\\slash", "new\nline", "ünïcödé ✓", "😀" * 3]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=10**308, max_value=10**330),  # float() overflows
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),  # sNaN: float() refuses
    st.text(max_size=12),
    st.sampled_from(ODD_STRINGS),
    st.binary(max_size=6),
)
cells = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=6), scalars, max_size=3),
)


# True about one time in eight (hypothesis favours small integers, so not integers(0, 7) == 0)
RARELY = st.sampled_from([False] * 7 + [True])


def mangle_rows(data: st.DataObject, rows: list[dict[str, Any]],
                names: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The recorded rows with cells replaced, columns dropped and added, rows added/dropped.

    `names` are the columns that name a row (datname, slot_name, ...): mangled more rarely,
    so that many examples still name their rows uniquely and the duplicate check applies.
    """
    columns = sorted({k for row in rows for k in row}) or ["x"]
    out = []
    for row in rows:
        if data.draw(st.booleans(), label="drop row") and data.draw(st.booleans()):
            continue
        new = dict(row)
        for key in list(new):
            weights = ["keep"] * (60 if key in names else 2) + ["odd", "null", "drop"]
            action = data.draw(st.sampled_from(weights))
            if action == "odd":
                new[key] = data.draw(cells)
            elif action == "null":
                new[key] = None
            elif action == "drop":
                del new[key]
        new.update(data.draw(st.dictionaries(st.text(max_size=8), cells, max_size=2)))
        out.append(new)
    extra = data.draw(st.lists(st.fixed_dictionaries(
        {name: st.text(min_size=1, max_size=8) for name in names if name in columns},
        optional={col: cells for col in columns if col not in names}), max_size=3),
        label="extra rows")
    return out + extra


def query_error(data: st.DataObject) -> BaseException:
    return data.draw(st.sampled_from([
        psycopg.errors.InsufficientPrivilege("permission denied for function x"),
        psycopg.errors.UndefinedColumn("column \"x\" does not exist"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
    ]))


# --------------------------------------------------------------------------- the poll harness


class FakeConnection:
    """All the poller reads from a psycopg connection besides the rows themselves."""

    def __init__(self, version: int) -> None:
        self.info = SimpleNamespace(server_version=version)
        self.closed = False
        self.broken = False


def pg_poll(poller: TargetPoller, results: dict[str, Any], version: int) -> TargetSnapshot:
    """poller.poll() with the network replaced: the queries answer `results`."""

    @contextlib.asynccontextmanager
    async def connection(*_a: Any, **_k: Any) -> Any:
        yield FakeConnection(version)

    async def answer(_conn: Any, queries: Any) -> dict[str, Any]:
        return {q: results.get(q, []) for q in queries}

    with mock.patch.object(poller.source.pool, "connection", connection), \
            mock.patch.object(postgres_source, "run_batch", answer), \
            mock.patch.object(sql_source, "run_each", answer):
        return asyncio.run(poller.poll())


def redis_poll(poller: TargetPoller, info: Any, config: Any = None,
               raises: BaseException | None = None) -> TargetSnapshot:
    client = poller.source.client.client  # type: ignore[attr-defined]

    async def fake_info(*_a: Any, **_k: Any) -> Any:
        if raises is not None:
            raise raises
        return info

    async def fake_config_get(*_a: Any, **_k: Any) -> Any:
        if isinstance(config, BaseException):
            raise config
        return config if config is not None else {}

    with mock.patch.object(client, "info", fake_info), \
            mock.patch.object(client, "config_get", fake_config_get):
        return asyncio.run(poller.poll())


def new_poller(kind: str, name: str, state: ClusterState | None = None) -> TargetPoller:
    target = next(t for t in getattr(CLUSTER, kind) if t.name == name)
    state = state or ClusterState("main")
    return TargetPoller(state, target, CONFIG)


# --------------------------------------------------------------------------- the checks


def check_metrics(items: Any) -> None:
    """Catalogued specs only, one string per declared label, a float value."""
    for item in items:
        assert isinstance(item, Metric | Observation), item
        if isinstance(item, Metric):
            assert c.CATALOGUE.get(item.spec.name) is item.spec, item.spec.name
            assert len(item.labels) == len(item.spec.labels), item
            assert all(isinstance(v, str) for v in item.labels), item
            assert isinstance(item.value, float), item


CATALOGUED_FAMILIES = {
    spec.name.removesuffix("_total") if spec.type == "counter" else spec.name
    for spec in c.CATALOGUE.values()
}


# Each source names its rows uniquely (GROUP BY, primary keys, PgBouncer's own lists); a
# series can only repeat if that breaks, which no real server does. The duplicate check
# applies whenever the mangled rows still name themselves uniquely with text.
IDENTITY: dict[str, Any] = {
    PG_SECTIONS["database"]: lambda r: (r["datname"],),
    PG_SECTIONS["slots"]: lambda r: (r["slot_name"],),
    PG_SECTIONS["replication"]: lambda r: (str(r["pid"]), r["application_name"]),
    PG_SECTIONS["activity"]: lambda r: (
        ("state", r["state"]) if r["by_state"] is True else ("app", r["application_name"])),
    "SHOW POOLS": lambda r: (r["database"], r["user"]),
    "SHOW DATABASES": lambda r: (r["name"],),
    "SHOW USERS": lambda r: (r["name"],),
    "SHOW STATS": lambda r: (r["database"],),
    "SHOW LISTS": lambda r: (r["list"],),
    "SHOW CONFIG": lambda r: (r["key"],),
}


NAME_COLUMNS: dict[str, tuple[str, ...]] = {
    PG_SECTIONS["database"]: ("datname",),
    PG_SECTIONS["slots"]: ("slot_name",),
    PG_SECTIONS["replication"]: ("pid", "application_name"),
    PG_SECTIONS["activity"]: ("by_state", "state", "application_name"),
    "SHOW POOLS": ("database", "user"),
    "SHOW DATABASES": ("name",),
    "SHOW USERS": ("name",),
    "SHOW STATS": ("database",),
    "SHOW LISTS": ("list",),
    "SHOW CONFIG": ("key",),
}


def named_uniquely(results: Mapping[str, Any]) -> bool:
    for query, rows in results.items():
        if query not in IDENTITY or isinstance(rows, BaseException):
            continue
        seen = set()
        for row in rows:
            try:
                key = IDENTITY[query](row)
            except KeyError:
                return False
            if not all(isinstance(part, str) for part in key) or key in seen:
                return False
            seen.add(key)
    return True


def check_exposition(snapshots: list[TargetSnapshot], unique: bool = True,
                     hypothesis: bool = True) -> None:
    if hypothesis:  # statistics: how often the stronger checks had something to check
        event(f"duplicate series checked: {unique}")
        event(f"data series: {sum(len(s.metrics) for s in snapshots) > 0}")
    for snap in snapshots:
        assert isinstance(snap, TargetSnapshot)
        check_metrics(snap.metrics)
        check_metrics(snap.daemon_metrics)
    text = render(snapshots).decode("utf-8")
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for family in text_string_to_metric_families(text):
        assert family.name in CATALOGUED_FAMILIES, family.name
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert not unique or key not in seen, f"duplicate series {key}"
            seen.add(key)
            assert isinstance(sample.value, float)


def assert_up_unless_status_broken(snap: TargetSnapshot, status_ok: bool) -> None:
    # one collector's odd rows drop that collector, never the whole target
    if status_ok:
        assert snap.up, snap.error


# --------------------------------------------------------------------------- PostgreSQL


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_postgres_poll_survives_any_rows(data: st.DataObject) -> None:
    state = ClusterState("main")
    snapshots = []
    unique = True
    # primary first, then the replica: the replica's lag reads the primary's (hostile) facts
    for target, role in (("primary", "primary"), ("replica-1", "replica")):
        poller = new_poller("postgres", target, state)
        for _ in range(data.draw(st.integers(1, 3), label="polls")):
            scenario = data.draw(st.sampled_from([s for s, r in PG_STATES if r == role]))
            recorded = PG_ROWS[scenario][role]
            results: dict[str, Any] = {}
            for section, query in PG_SECTIONS.items():
                rows = recorded[section]
                if section == "status":
                    if data.draw(RARELY, label="mangle status"):
                        rows = mangle_rows(data, rows)
                    results[query] = rows
                elif data.draw(RARELY, label="query fails"):
                    results[query] = query_error(data)
                else:
                    results[query] = mangle_rows(data, rows, NAME_COLUMNS.get(query, ()))
            version = data.draw(st.sampled_from([0, 90600, 130000, 150018, 170000, 10**9]))
            snap = pg_poll(poller, results, version)
            unique = named_uniquely(results)
            status_ok = results[STATUS_SQL] is recorded["status"]
            assert_up_unless_status_broken(snap, status_ok)
        snapshots.append(snap)
    check_exposition(snapshots, unique)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_each_sql_parser_under_the_guard(data: st.DataObject) -> None:
    """The unit the poller relies on: `_guard` returns a clean list or None, never raises."""
    collectors = [(col, "postgres") for col in POSTGRES_COLLECTORS]
    collectors += [(col, "pgbouncer") for col in PGBOUNCER_COLLECTORS]
    collector, kind = data.draw(st.sampled_from(collectors))
    ctx = PollContext(
        TargetId("main", "t", Kind(kind)), now=data.draw(st.floats(allow_nan=True)),
        role=data.draw(st.sampled_from([None, *Role])),
        previous=data.draw(st.dictionaries(
            st.tuples(st.sampled_from(sorted(c.CATALOGUE)), st.tuples(st.text(max_size=5))),
            st.floats(allow_nan=True, allow_infinity=True), max_size=5)),
        previous_time=data.draw(st.none() | st.floats(allow_nan=True)),
    )
    results = {}
    for query in collector.queries(ctx):
        if kind == "postgres":
            section = next(s for s, q in PG_SECTIONS.items() if q == query)
            state, role = data.draw(st.sampled_from(PG_STATES))
            base = PG_ROWS[state][role][section]
        else:
            base = data.draw(st.sampled_from(BOUNCER))[query]
        results[query] = mangle_rows(data, base, NAME_COLUMNS.get(query, ()))
    output = _guard(collector.name, lambda: collector.parse(results, ctx))
    assert output is None or isinstance(output, list)
    check_metrics(output or ())


# --------------------------------------------------------------------------- PgBouncer


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_pgbouncer_poll_survives_any_show_output(data: st.DataObject) -> None:
    poller = new_poller("pgbouncer", "bouncer")
    snap = None
    for _ in range(data.draw(st.integers(1, 3), label="polls")):
        recorded = data.draw(st.sampled_from(BOUNCER))
        results: dict[str, Any] = {}
        for query, rows in recorded.items():
            if query == "source":
                continue
            if data.draw(RARELY, label="query fails"):
                results[query] = query_error(data)
            else:
                results[query] = mangle_rows(data, rows, NAME_COLUMNS.get(query, ()))
        snap = pg_poll(poller, results, 0)
        assert snap.up, snap.error
    assert snap is not None
    check_exposition([snap], named_uniquely(results))


# --------------------------------------------------------------------------- Redis

INFO_KEYS = sorted({k for text in INFO_TEXTS for k in parse_info(text)})


def mangle_info(data: st.DataObject, info: dict[str, Any]) -> dict[str, Any]:
    out = dict(info)
    for key in list(out):
        action = data.draw(st.sampled_from(["keep"] * 6 + ["odd", "drop"]))
        if action == "odd":
            out[key] = data.draw(cells)
        elif action == "drop":
            del out[key]
    out.update(data.draw(st.dictionaries(
        st.one_of(st.sampled_from(INFO_KEYS), st.text(max_size=10),
                  st.from_regex(r"\A(db|slave)[0-9٠-٩]{1,3}\Z")),
        cells, max_size=4), label="extra keys"))
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_redis_poll_survives_any_info_dict(data: st.DataObject) -> None:
    poller = new_poller("redis", "cache")
    snapshots = []
    for _ in range(data.draw(st.integers(1, 3), label="polls")):
        info = mangle_info(data, parse_info(data.draw(st.sampled_from(INFO_TEXTS))))
        config = data.draw(st.one_of(
            st.none(), st.dictionaries(st.one_of(st.just(b"maxclients"), st.binary(max_size=4),
                                                 st.text(max_size=4)), cells, max_size=2),
            st.just(redis.exceptions.NoPermissionError("NOPERM"))))
        snap = redis_poll(poller, info, config)
        assert snap.up, snap.error
        snapshots = [snap]
    check_exposition(snapshots)


LINE_CHARS = st.characters(codec="utf-8", exclude_characters="\r\n")  # no surrogates
INFO_LINE_KEYS = st.one_of(st.sampled_from(INFO_KEYS), st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n:"), max_size=10))
INFO_VALUES = st.one_of(
    st.sampled_from(ODD_STRINGS).map(lambda s: s.replace("\n", " ")),
    st.text(alphabet=LINE_CHARS, max_size=30),
    st.from_regex(r"\A(keys|expires|ip|port|offset|state)=[-0-9a-z.]{0,6}"
                  r"(,(keys|expires|avg_ttl|offset|lag)=[-0-9a-z.]{0,6}){0,3}\Z"),
)
info_text = st.lists(st.one_of(
    st.tuples(INFO_LINE_KEYS, INFO_VALUES).map(lambda kv: f"{kv[0]}:{kv[1]}"),
    st.sampled_from(["# Server", "# Keyspace", "", "garbage without colon", ":", "::"]),
    st.text(max_size=40),
), max_size=30).map("\r\n".join)




@st.composite
def mangled_info_text(draw: st.DrawFn) -> str:
    """A recorded INFO reply with values replaced and random lines spliced in."""
    lines = draw(st.sampled_from(INFO_TEXTS)).splitlines()
    out = []
    for line in lines:
        key, sep, _ = line.partition(":")
        action = draw(st.sampled_from(["keep"] * 6 + ["value", "drop", "insert"]))
        if action == "value" and sep:
            out.append(f"{key}:{draw(INFO_VALUES)}")
        elif action == "insert":
            out += [line, draw(st.text(alphabet=LINE_CHARS, max_size=30))]
        elif action != "drop":
            out.append(line)
    return "\r\n".join(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(info_text, info_text.map(str.encode), mangled_info_text(),
                 st.binary(max_size=200), st.sampled_from(INFO_TEXTS).map(str.encode)))
def test_redis_info_text_parser_and_poll(text: str | bytes) -> None:
    """redis-py's INFO parser on any reply text; whatever it does, the poll copes: a parser
    exception surfaces from `info()` (the target is reported down), a dict is polled."""
    try:
        info: dict[str, Any] | None = parse_info(text)
        error: BaseException | None = None
    except Exception as exc:  # redis-py raises from inside info(): the poll's problem
        info, error = None, exc
    snap = redis_poll(new_poller("redis", "cache"), info, {}, raises=error)
    assert snap.up is (error is None), snap.error
    for collector in REDIS_COLLECTORS:
        if info is not None:
            ctx = PollContext(TargetId("main", "cache", Kind.REDIS), now=0.0)
            output = _guard(collector.name, lambda col=collector, c=ctx: col.parse(info, c))
            check_metrics(output or ())
    check_exposition([snap])


# --------------------------------------------------------------------------- sanity


def test_harness_sees_the_real_rows_as_a_healthy_poll() -> None:
    """Without mangling, the harness gives what the real servers gave: all collectors ok."""
    state = ClusterState("main")
    primary = new_poller("postgres", "primary", state)
    results = {q: PG_ROWS["idle"]["primary"][s] for s, q in PG_SECTIONS.items()}
    snap = pg_poll(primary, results, 150018)
    assert snap.up and snap.metrics
    ok = {m.labels[1]: m.value for m in snap.daemon_metrics
          if m.spec is c.COLLECTOR_SUCCESS}
    assert ok and all(v == 1 for v in ok.values()), ok
    bouncer = pg_poll(new_poller("pgbouncer", "bouncer"),
                      {q: r for q, r in BOUNCER[0].items() if q != "source"}, 0)
    info = parse_info(INFO_TEXTS[0])
    cache = redis_poll(new_poller("redis", "cache"), info)
    assert bouncer.up and bouncer.metrics and cache.up and cache.metrics
    check_exposition([snap, bouncer, cache], hypothesis=False)


def test_non_string_label_from_a_parser_is_contained() -> None:
    """A parser that hands a number where a label value belongs must not break /metrics for
    every target: the poll keeps the collector out instead."""
    state = ClusterState("main")
    poller = new_poller("postgres", "primary", state)
    results = {q: PG_ROWS["idle"]["primary"][s] for s, q in PG_SECTIONS.items()}
    activity = PG_SECTIONS["activity"]
    results[activity] = [{**results[activity][0], "state": 5}]
    snap = pg_poll(poller, results, 150018)
    assert snap.up
    check_exposition([snap], hypothesis=False)


def test_decimal_and_huge_cells_do_not_leak_as_non_floats() -> None:
    items = _guard("pg_database", lambda: POSTGRES_COLLECTORS[2].parse(
        {PG_SECTIONS["database"]: [{"datname": "a", "blks_hit": Decimal("7"),
                                     "blks_read": 10**400}]},
        PollContext(TargetId("main", "primary", Kind.POSTGRES), now=0.0)))
    check_metrics(items or ())

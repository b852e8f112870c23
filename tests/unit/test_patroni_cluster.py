"""exporter/patroni.py on real /cluster bodies (tests/data/patroni_capture.py), hostile ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter.patroni import PatroniAnswerError, PatroniMember, member_dsn, parse_cluster

CAPTURE = json.loads(
    (Path(__file__).parent.parent / "data" / "patroni_4.1.5_cluster.json").read_text())


def _roles(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(m.name, m.role, m.state) for m in parse_cluster(json.dumps(doc))]


def test_a_healthy_cluster() -> None:
    members = parse_cluster(json.dumps(CAPTURE["healthy"]).encode())
    assert [m.name for m in members] == ["pg-1", "pg-2", "pg-3"]
    leader = members[0]
    assert (leader.role, leader.state, leader.timeline) == ("leader", "running", 1)
    assert leader.host == "127.0.0.1" and 1024 < leader.port < 65536
    assert [(m.role, m.state) for m in members[1:]] == [("replica", "streaming")] * 2


def test_every_answer_during_a_switchover_keeps_every_member() -> None:
    # The old leader is stopping, stopped, starting in turn: it stays a member throughout,
    # so its target is never dropped and re-added (no churn of its pool and series).
    answers = CAPTURE["switchover"]
    assert len(answers) > 3
    for doc in answers:
        assert [name for name, _, _ in _roles(doc)] == ["pg-1", "pg-2", "pg-3"]
    states = {state for doc in answers for name, _, state in _roles(doc) if name == "pg-1"}
    assert {"running", "stopping", "stopped", "streaming"} <= states
    assert _roles(answers[-1])[1][:2] == ("pg-2", "leader")


def test_a_crashed_leader_is_listed_until_its_key_expires() -> None:
    crashed = {name: (role, state) for name, role, state in _roles(CAPTURE["leader_crashed"])}
    assert crashed["pg-2"] == ("leader", "running")  # /cluster is what members last wrote
    after = [name for name, _, _ in _roles(CAPTURE["failed_over"])]
    assert "pg-2" not in after and len(after) == 2
    assert len(parse_cluster(json.dumps(CAPTURE["rejoined"]))) == 3


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'{"scope": "x"}', b'{"members": {}}', b'"members"',
    b"[" * 100_000,
])
def test_an_answer_that_is_not_a_cluster_is_one_error(body: bytes) -> None:
    with pytest.raises(PatroniAnswerError) as info:
        parse_cluster(body)
    assert "\n" not in str(info.value)


def _one(**fields: Any) -> dict[str, Any]:
    member = {"name": "pg-1", "host": "10.0.0.1", "port": 5432, "role": "leader",
              "state": "running", "timeline": 4}
    member.update(fields)
    return {"members": [member]}


@pytest.mark.parametrize("fields", [
    {"name": None}, {"name": ""}, {"name": "a\nb"}, {"name": "x" * 201}, {"name": 7},
    {"host": None}, {"host": "a b"}, {"host": "h\x00"}, {"port": "5432"}, {"port": 0},
    {"port": 70000}, {"port": True}, {"port": 5432.0},
])
def test_a_member_that_cannot_be_watched_is_left_out(fields: dict[str, Any]) -> None:
    assert parse_cluster(json.dumps(_one(**fields))) == ()


def test_odd_roles_states_and_timelines_are_kept_safe() -> None:
    (member,) = parse_cluster(json.dumps(_one(role="<b>" * 50, state=3, timeline="4")))
    assert (member.role, member.state, member.timeline) == ("unknown", "unknown", None)
    (member,) = parse_cluster(json.dumps(_one(state="in archive recovery", timeline=True)))
    assert (member.state, member.timeline) == ("in archive recovery", None)


def test_names_are_unique_and_members_bounded() -> None:
    doc = {"members": [_one(port=5432)["members"][0], _one(port=5433)["members"][0]]}
    assert [m.port for m in parse_cluster(json.dumps(doc))] == [5432]
    many = {"members": [_one(name=f"m{i}")["members"][0] for i in range(1000)]}
    assert len(parse_cluster(json.dumps(many))) == 64


def test_member_dsn_fills_host_and_port() -> None:
    member = PatroniMember("pg-1", "10.0.0.1", 5433, "leader", "running")
    assert member_dsn("postgresql://monitor@{host}:{port}/postgres", member) == \
        "postgresql://monitor@10.0.0.1:5433/postgres"
    assert member_dsn("host={host} port={port} user=monitor", member) == \
        "host=10.0.0.1 port=5433 user=monitor"
    # A password with braces survives (no str.format).
    assert member_dsn("postgresql://m:p{x}@{host}:{port}/db", member) == \
        "postgresql://m:p{x}@10.0.0.1:5433/db"


def test_member_dsn_brackets_an_ipv6_host_in_a_uri() -> None:
    member = PatroniMember("pg-1", "fd00::1", 5432, "replica", "streaming")
    assert member_dsn("postgresql://monitor@{host}:{port}/postgres", member) == \
        "postgresql://monitor@[fd00::1]:5432/postgres"
    assert member_dsn("postgresql://monitor@[{host}]:{port}/postgres", member) == \
        "postgresql://monitor@[fd00::1]:5432/postgres"
    assert member_dsn("host={host} port={port}", member) == "host=fd00::1 port=5432"

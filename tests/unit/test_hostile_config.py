"""Hostile settings files: anything at all gives a Settings or one clean ConfigError line."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import ConfigError, Settings, load_settings
from exporter.discovery import load_cluster_file

SECRET = "Zq9SecretXx"

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
    st.text(max_size=30), st.just(f"postgresql://u:{SECRET}@h:5432/db"),
    st.just(f"redis://:{SECRET}@h:6379/0"), st.just(-1), st.just("127.0.0.1:9847"),
)
keys = st.sampled_from([
    "listen", "poll_interval", "clusters", "name", "postgres", "pgbouncer", "redis", "dsn",
    "url", "password_file", "poll_timeout", "shard", "index", "count", "bogus", "log_level",
])
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)
near_valid = st.fixed_dictionaries({
    "poll_interval": st.one_of(st.floats(allow_nan=True), st.integers(), st.text(max_size=5)),
    "clusters": st.lists(st.fixed_dictionaries({
        "name": st.text(max_size=10),
        "postgres": st.lists(st.fixed_dictionaries({
            "name": st.text(max_size=10),
            "dsn": st.one_of(st.text(max_size=60), st.just(f"host=h password={SECRET} port"),
                             st.just(f"mysql://u:{SECRET}@h/db")),
        }), max_size=3),
        "redis": st.lists(st.fixed_dictionaries({
            "name": st.text(max_size=10),
            "url": st.one_of(st.text(max_size=40), st.just(f"redis://:{SECRET}@h:99999/x")),
        }), max_size=2),
    }), max_size=3),
})


def check_outcome(path: Path) -> None:
    try:
        result = load_settings(path)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ")
        assert "\n" not in message
        assert SECRET not in message
    else:
        assert isinstance(result, Settings)
        assert SECRET not in repr(result)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(documents, near_valid))
def test_any_document(doc: object) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.yaml"
        path.write_text(yaml.safe_dump(doc))
        check_outcome(path)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200).map(lambda t: t + f"\npassword: {SECRET}\n"))
def test_any_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.yaml"
        path.write_text(text)
        check_outcome(path)


@settings(max_examples=200, deadline=None)
@given(st.one_of(documents, near_valid.map(lambda d: d["clusters"])))
def test_any_cluster_file(doc: object) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(yaml.safe_dump(doc))
        try:
            load_cluster_file(path)
        except ConfigError as exc:
            assert "\n" not in str(exc) and SECRET not in str(exc)


def test_yaml_problem_never_quotes_the_input(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    for text in (f"a: *{SECRET}\n", f"a: !{SECRET} x\n", f"a: '{SECRET}\n"):
        path.write_text(text)
        try:
            load_settings(path)
        except ConfigError as exc:
            assert SECRET not in str(exc), str(exc)
        else:
            raise AssertionError("accepted a broken file")

"""One bad config file per error class: one line naming file and field, exit 2, no secret."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import ConfigError, load_settings

SECRET = "hunter2-very-secret"

GOOD = f"""
listen: "127.0.0.1:9847"
poll_interval: 15
clusters:
  - name: main
    postgres:
      - name: primary
        dsn: "postgresql://monitor:{SECRET}@127.0.0.1:5432/postgres"
      - name: replica-1
        dsn: "postgresql://monitor@127.0.0.1:5433/postgres"
        poll_interval: 5
    pgbouncer:
      - name: bouncer
        dsn: "postgresql://monitor@127.0.0.1:6432/pgbouncer"
    redis:
      - name: cache
        url: "redis://:{SECRET}@127.0.0.1:6379/0"
"""

# (file content, expected field path, expected phrase)
BAD = {
    "bad_yaml": (f'clusters: [\n  dsn: "postgresql://u:{SECRET}@h/db"\n  : :\n',
                 "invalid YAML at line 3", "expected"),
    "unknown_key": ("listen: '127.0.0.1:9847'\npoll_intervall: 5\n",
                    "poll_intervall", "unknown setting"),
    "unknown_nested_key": (GOOD.replace("poll_interval: 5", "poll_interval: 5\n        sdn: x"),
                           "clusters[0].postgres[1].sdn", "unknown setting"),
    "duplicate_target": (GOOD.replace("name: cache", "name: primary"),
                         "clusters[0].redis[0].name", "used twice"),
    "duplicate_cluster": (GOOD + GOOD.split("clusters:\n", 1)[1],
                          "clusters[1].name", "used twice"),
    "bad_dsn_scheme": (GOOD.replace("postgresql://monitor:", "mysql://monitor:"),
                       "clusters[0].postgres[0].dsn", "scheme must be postgresql"),
    "bad_redis_scheme": (GOOD.replace("redis://:", "http://:"),
                         "clusters[0].redis[0].url", "scheme must be redis"),
    "unparsable_dsn": (GOOD.replace(f"postgresql://monitor:{SECRET}@127.0.0.1:5432/postgres",
                                    f"host=h password={SECRET} port"),
                       "clusters[0].postgres[0].dsn", "not a valid PostgreSQL"),
    "negative_interval": ("poll_interval: -1\n", "poll_interval", "greater than 0"),
    "negative_target_interval": (GOOD.replace("poll_interval: 5", "poll_interval: -5"),
                                 "clusters[0].postgres[1].poll_interval", "greater than 0"),
    "bad_listen": ("listen: 'nowhere'\n", "listen", "host:port"),
    "missing_password_file": (GOOD.replace(
        "poll_interval: 5", "password_file: /nonexistent/tierwatch-secret"),
        "clusters[0].postgres[1].password_file", "cannot read"),
    "not_a_mapping": ("- just\n- a list\n", "(top level)", "mapping"),
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tierwatch.yaml"
    path.write_text(text)
    return path


def test_good_config_loads_with_defaults_and_hides_passwords(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    cluster = settings.clusters[0]
    assert [t.name for t in cluster.postgres] == ["primary", "replica-1"]
    assert settings.interval_of(cluster.postgres[1]) == 5
    assert settings.interval_of(cluster.postgres[0]) == 15
    assert settings.deadline_of(cluster.postgres[1]) == pytest.approx(4.0)  # 0.8 x interval
    assert settings.deadline_of(cluster.postgres[0]) == 10.0  # poll_timeout
    assert cluster.postgres[0].password() == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(cluster.redis[0].url)


def test_password_file_wins_and_is_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    text = GOOD.replace("poll_interval: 5", f"password_file: {secret}")
    settings = load_settings(write(tmp_path, text))
    assert settings.clusters[0].postgres[1].password() == "from-file"


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERWATCH_POLL_INTERVAL", "3")
    monkeypatch.setenv("TIERWATCH_LISTEN", "127.0.0.1:1234")
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.poll_interval == 3
    assert settings.listen_port == 1234


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_settings(tmp_path / "nope.yaml")


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_names_file_field_and_problem(tmp_path: Path, case: str) -> None:
    text, field, phrase = BAD[case]
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert field in message, message
    assert phrase in message, message
    assert "\n" not in message
    assert SECRET not in message


@pytest.mark.parametrize("case", ["missing", "bad_yaml", "duplicate_target", "bad_dsn_scheme",
                                  "negative_interval", "unknown_key"])
@pytest.mark.parametrize("command", ["run", "check"])
def test_cli_exits_2_with_one_line(tmp_path: Path, case: str, command: str) -> None:
    path = tmp_path / "absent.yaml" if case == "missing" else write(tmp_path, BAD[case][0])
    result = subprocess.run(
        [sys.executable, "-m", "exporter", command, "-c", str(path)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_config_from_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, BAD["negative_interval"][0])
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "check"], capture_output=True, text=True,
        env={"TIERWATCH_CONFIG": str(path), "PATH": "/usr/bin:/bin"}, timeout=30,
    )
    assert result.returncode == 2
    assert str(path) in result.stderr


def test_no_config_at_all() -> None:
    result = subprocess.run([sys.executable, "-m", "exporter", "check"], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert result.returncode == 2
    assert "TIERWATCH_CONFIG" in result.stderr


@pytest.mark.parametrize("command", ["run", "check", "health"])
def test_no_libpq_is_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    # psycopg told to use an implementation that is not installed fails its import as it
    # does on a machine without libpq
    absent = next(impl for impl, module in (("c", "psycopg_c"), ("binary", "psycopg_binary"))
                  if importlib.util.find_spec(module) is None)
    result = subprocess.run(
        [sys.executable, "-m", "exporter", command, "-c", str(write(tmp_path, "clusters: []\n"))],
        capture_output=True, text=True, env={"PSYCOPG_IMPL": absent, "PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "finds no libpq" in lines[0] and "libpq5" in lines[0], lines
    assert "Traceback" not in result.stderr

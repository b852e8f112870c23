"""No password from a DSN, URL or password_file reaches logs, errors, /metrics, / or check."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.support import DaemonProcess, free_port, http_get, wait_until
from tests.topology import Topology

# distinctive, so a leak cannot hide in ordinary text
WRONG_PG = "Wr0ngPgSecretZX81"
WRONG_FILE = "Wr0ngFileSecretQQ42"
WRONG_REDIS = "Wr0ngRedisSecretJJ77"
DEAD = "DeadPortSecretKK19"


def hostile_config(topology: Topology, tmp_path: Path) -> tuple[str, list[str]]:
    doc = yaml.safe_load(topology.tierwatch_config(poll_interval=1.0))
    wrong_file = tmp_path / "wrong.password"
    wrong_file.write_text(WRONG_FILE + "\n")
    cluster = doc["clusters"][0]
    primary, replica = cluster["postgres"]
    good_pg = topology.monitor_password
    good_redis = topology.redis_monitor_password
    # the real passwords inline too: they must not leak either
    primary["dsn"] = primary["dsn"].replace("monitor@", f"monitor:{good_pg}@")
    del primary["password_file"]
    replica["dsn"] = replica["dsn"].replace("monitor@", f"monitor:{WRONG_PG}@")
    del replica["password_file"]
    cluster["pgbouncer"][0]["password_file"] = str(wrong_file)
    cluster["redis"][0]["url"] = cluster["redis"][0]["url"].replace(
        "monitor@", f"monitor:{good_redis}@")
    del cluster["redis"][0]["password_file"]
    cluster["redis"].append({"name": "wrong-redis", "url": cluster["redis"][0]["url"].replace(
        good_redis, WRONG_REDIS)})
    cluster["postgres"].append(
        {"name": "dead", "dsn": f"postgresql://monitor:{DEAD}@127.0.0.1:{free_port()}/postgres"})
    cluster["postgres"].append(
        {"name": "nxdomain", "dsn": f"host=tierwatch-no-such-host.invalid user=monitor "
                                    f"password={DEAD} dbname=postgres"})
    doc["log_level"] = "debug"
    return yaml.safe_dump(doc), [good_pg, good_redis, WRONG_PG, WRONG_FILE, WRONG_REDIS, DEAD]


def assert_clean(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a password leaked into {where}"


def test_no_secret_anywhere(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    config, secrets = hostile_config(topology, tmp_path)
    daemon = daemon_factory(config)
    scrape = wait_until(
        lambda: (s := daemon.scrape()) and s.value("tierwatch_up", target="primary") == 1
        and s.value("tierwatch_up", target="cache") == 1
        and all(s.value("tierwatch_poll_errors_total", target=t) >= 2
                for t in ("replica-1", "bouncer", "wrong-redis", "dead", "nxdomain")) and s,
        20, "good targets up and bad ones failing twice")
    assert scrape.value("tierwatch_up", target="replica-1") == 0
    log = daemon.log_text()
    # the failures were logged with their reason (so the test looked at real error text)
    assert "password authentication failed" in log
    assert "WRONGPASS" in log or "invalid username-password" in log
    assert_clean(log, secrets, "the log")
    assert_clean(scrape.text, secrets, "/metrics")
    assert_clean(http_get(daemon.url + "/")[1].decode(), secrets, "the landing page")

    path = tmp_path / "check.yaml"
    path.write_text(config)
    result = subprocess.run([sys.executable, "-m", "exporter", "check", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "DOWN" in result.stderr
    assert_clean(result.stdout + result.stderr, secrets, "tierwatch check")

"""Password rotation without a restart: the monitor password is read at every (re)connect.

Each test rotates a role of its own (ALTER ROLE / ACL SETUSER + the password file), cuts the
daemon's connections, and expects the target up again on a new connection within two polls,
with the new password nowhere in the log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import yaml

from tests.support import DaemonProcess, wait_until
from tests.topology import Topology

POLL = 1.0


def _secret(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _up_after(daemon: DaemonProcess, target: str, since: float) -> bool:
    scrape = daemon.scrape()
    last = scrape.value("tierwatch_last_poll_success_timestamp_seconds", target=target) or 0.0
    return scrape.value("tierwatch_up", target=target) == 1 and last > since


@pytest.fixture
def pg_role(topology: Topology) -> Iterator[str]:
    topology.psql(topology.primary, "CREATE ROLE tw_rotate LOGIN PASSWORD 'before-rotation-1' "
                                    "IN ROLE pg_monitor")
    yield "tw_rotate"
    topology.psql(topology.primary, "SELECT count(pg_terminate_backend(pid)) FROM "
                                    "pg_stat_activity WHERE usename = 'tw_rotate'")
    wait_until(lambda: topology.psql(topology.primary, "SELECT count(*) FROM pg_stat_activity "
                                     "WHERE usename = 'tw_rotate'") == "0", 10, "backends gone")
    topology.psql(topology.primary, "DROP ROLE tw_rotate")


def _backends(topology: Topology) -> set[str]:
    with psycopg.connect(topology.superuser_dsn(topology.primary), autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE usename = 'tw_rotate'")
        return {str(r[0]) for r in rows}


def test_postgres_password_rotation(
    topology: Topology, pg_role: str, tmp_path: Path,
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    secret = _secret(tmp_path / "pg.password", "before-rotation-1")
    server = topology.primary
    daemon = daemon_factory(yaml.safe_dump({"poll_interval": POLL, "clusters": [{
        "name": "main", "postgres": [{
            "name": "primary", "dsn": f"postgresql://{pg_role}@{server.host}:{server.port}/postgres",
            "password_file": str(secret)}]}]}))
    wait_until(lambda: _up_after(daemon, "primary", 0.0), 10, "primary up")
    before = wait_until(lambda: _backends(topology) or None, 10, "the daemon's backend")

    topology.psql(server, "ALTER ROLE tw_rotate PASSWORD 'after-rotation-2'")
    _secret(secret, "after-rotation-2")
    cut = time.time()
    topology.psql(server, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                          "WHERE usename = 'tw_rotate'")

    wait_until(lambda: _up_after(daemon, "primary", cut + POLL), 2 * POLL + 2.5,
               f"primary up again after the rotation (log: {daemon.log_tail()})")
    after = _backends(topology)
    assert after and not after & before, (before, after)  # a new connection, not the old one
    assert "after-rotation-2" not in daemon.log_text()


@pytest.fixture
def redis_user(topology: Topology) -> Iterator[redis.Redis]:
    admin = redis.Redis(topology.redis.host, topology.redis.port)
    admin.execute_command("ACL", "SETUSER", "tw_rotate", "on", ">before-rotation-1",
                          "-@all", "+info", "+ping")
    yield admin
    admin.execute_command("ACL", "DELUSER", "tw_rotate")
    admin.close()


def _redis_clients(admin: redis.Redis) -> set[str]:
    return {str(c["id"]) for c in admin.client_list() if c.get("user") == "tw_rotate"}


def test_redis_password_rotation(
    topology: Topology, redis_user: redis.Redis, tmp_path: Path,
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    secret = _secret(tmp_path / "redis.password", "before-rotation-1")
    daemon = daemon_factory(yaml.safe_dump({"poll_interval": POLL, "clusters": [{
        "name": "main", "redis": [{
            "name": "cache",
            "url": f"redis://tw_rotate@{topology.redis.host}:{topology.redis.port}/0",
            "password_file": str(secret)}]}]}))
    wait_until(lambda: _up_after(daemon, "cache", 0.0), 10, "cache up")
    before = wait_until(lambda: _redis_clients(redis_user) or None, 10, "the daemon's client")

    redis_user.execute_command("ACL", "SETUSER", "tw_rotate", "resetpass", ">after-rotation-2")
    _secret(secret, "after-rotation-2")
    cut = time.time()
    redis_user.execute_command("CLIENT", "KILL", "USER", "tw_rotate")

    wait_until(lambda: _up_after(daemon, "cache", cut + POLL), 2 * POLL + 2.5,
               f"cache up again after the rotation (log: {daemon.log_tail()})")
    after = _redis_clients(redis_user)
    assert after and not after & before, (before, after)
    assert "after-rotation-2" not in daemon.log_text()

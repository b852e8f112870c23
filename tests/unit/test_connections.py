"""Connections read passwords at every connect and refuse oversized Redis replies.

What a real refused, unresolvable, frozen or full server does to a poll is in
tests/faults/; the rotation against real servers is tests/integration/test_rotation.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exporter import compat
from exporter.config import load_settings
from exporter.connections import PgPool, RedisClient, _PasswordFile
from exporter.secrets import SECRETS


def settings_with(tmp_path: Path, secret: Path) -> object:
    config = tmp_path / "tierwatch.yaml"
    config.write_text(yaml.safe_dump({"clusters": [{
        "name": "main",
        "postgres": [{"name": "db", "dsn": "postgresql://monitor@127.0.0.1:1/postgres",
                      "password_file": str(secret)}],
        "redis": [{"name": "cache", "url": "redis://monitor@127.0.0.1:2/0",
                   "password_file": str(secret)}],
    }]}))
    return load_settings(config)


def test_postgres_password_is_read_at_every_connect(tmp_path: Path) -> None:
    secret = tmp_path / "pg"
    secret.write_text("first-password\n")
    settings = settings_with(tmp_path, secret)
    target = settings.clusters[0].postgres[0]  # type: ignore[attr-defined]
    pool = PgPool(target, settings, admin_console=False)  # type: ignore[arg-type]
    assert pool.connect_kwargs()["password"] == "first-password"
    secret.write_text("rotated-password\n")
    assert pool.connect_kwargs()["password"] == "rotated-password"
    assert SECRETS.scrub("x rotated-password y") == "x *** y"  # scrubbed once known


def test_redis_credentials_are_read_at_every_connect(tmp_path: Path) -> None:
    secret = tmp_path / "redis"
    secret.write_text("one\n")
    settings = settings_with(tmp_path, secret)
    target = settings.clusters[0].redis[0]  # type: ignore[attr-defined]
    provider = _PasswordFile(target)
    assert provider.get_credentials() == ("monitor", "one")
    secret.write_text("two")
    assert provider.get_credentials() == ("monitor", "two")
    RedisClient(target, settings)  # builds with the provider (no username/password pair)


def test_the_pinned_redis_py_series_is_installed() -> None:
    # exporter/compat.py subclasses a private redis-py parser: only for tested releases
    assert compat.redis_py_series() in compat.REDIS_PY_TESTED


def test_an_oversized_bulk_reply_is_refused_before_it_is_read() -> None:
    import asyncio

    from redis.exceptions import InvalidResponse

    parser = compat.BoundedRESP3Parser(socket_read_size=4096)

    async def read_huge() -> bytes:
        return await parser._read(compat.MAX_REDIS_BULK_BYTES + 1)

    with pytest.raises(InvalidResponse, match="bulk reply of 1048577 bytes refused"):
        asyncio.run(read_huge())

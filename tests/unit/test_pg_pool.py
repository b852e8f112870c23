"""PgPool.connection(): fail as soon as the pool gives up an attempt, never lose a connection.

The pool is replaced by a stand-in whose getconn the test controls; what a real refused,
unresolvable or full server does is in tests/faults/test_unreachable.py and
test_max_connections.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import all_targets, load_settings
from exporter.connections import ConnectFailed, PgPool


class StandInPool:
    def __init__(self) -> None:
        self.handed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.returned: list[str] = []

    async def getconn(self) -> str:
        """Hands over `handed` once set, even when cancelled meanwhile: the worst case, a
        hand-over already under way when the cancel arrives."""
        try:
            return await asyncio.shield(self.handed)
        except asyncio.CancelledError:
            return await self.handed

    async def putconn(self, conn: str) -> None:
        self.returned.append(conn)


def make_pool(tmp_path: Path) -> PgPool:
    config = tmp_path / "tierwatch.yaml"
    config.write_text(yaml.safe_dump({"clusters": [{"name": "main", "postgres": [
        {"name": "db", "dsn": "postgresql://monitor@127.0.0.1:1/postgres"}]}]}))
    settings = load_settings(config)
    ((_, target),) = all_targets(settings)
    return PgPool(target, settings, admin_console=False)  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_given_up_attempt_ends_the_wait_with_its_reason(tmp_path: Path) -> None:
    async def scenario() -> tuple[str, list[str]]:
        pg = make_pool(tmp_path)
        stand_in = StandInPool()
        pg.pool = stand_in  # type: ignore[assignment]
        pg.last_connect_error = "connection refused"

        async def give_up_soon() -> None:
            await settle()
            pg._attempt_given_up(stand_in)  # type: ignore[arg-type]

        giver = asyncio.create_task(give_up_soon())
        with pytest.raises(ConnectFailed) as failed:
            async with pg.connection():
                pass
        await giver
        # the connection the pool hands over afterwards is not lost: it goes back
        stand_in.handed.set_result("late connection")
        await settle()
        return str(failed.value), stand_in.returned

    reason, returned = asyncio.run(scenario())
    assert reason == "connection refused"
    assert returned == ["late connection"]


def test_a_connection_is_used_and_returned(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[Any], list[str]]:
        pg = make_pool(tmp_path)
        stand_in = StandInPool()
        pg.pool = stand_in  # type: ignore[assignment]
        stand_in.handed.set_result("conn")
        used = []
        async with pg.connection() as conn:
            used.append(conn)
            assert stand_in.returned == []
        return used, stand_in.returned

    assert asyncio.run(scenario()) == (["conn"], ["conn"])


def test_a_deadline_cancel_while_waiting_returns_a_late_connection(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        pg = make_pool(tmp_path)
        stand_in = StandInPool()
        pg.pool = stand_in  # type: ignore[assignment]

        async def poll() -> None:
            async with pg.connection():
                raise AssertionError("no connection was handed over before the cancel")

        task = asyncio.create_task(poll())
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stand_in.handed.set_result("late connection")
        await settle()
        return stand_in.returned

    assert asyncio.run(scenario()) == ["late connection"]

"""PgPool.connection(): fail as soon as the pool gives up an attempt, never lose a connection.

The pool is replaced by a stand-in whose getconn the test controls; what a real refused,
unresolvable or full server does is in tests/faults/test_unreachable.py and
test_max_connections.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
        self.on_handover: Callable[[], object] = lambda: None

    async def getconn(self) -> str:
        """Hands over `handed` once set, even when cancelled meanwhile: the worst case, a
        hand-over already under way when the cancel arrives."""
        try:
            conn = await asyncio.shield(self.handed)
        except asyncio.CancelledError:
            return await self.handed
        self.on_handover()
        return conn

    async def putconn(self, conn: str) -> None:
        self.returned.append(conn)


def pool_with_stand_in(tmp_path: Path) -> tuple[PgPool, StandInPool]:
    """A PgPool whose psycopg pool is a stand-in; call inside the event loop."""
    config = tmp_path / "tierwatch.yaml"
    config.write_text(yaml.safe_dump({"clusters": [{"name": "main", "postgres": [
        {"name": "db", "dsn": "postgresql://monitor@127.0.0.1:1/postgres"}]}]}))
    settings = load_settings(config)
    ((_, target),) = all_targets(settings)
    pg = PgPool(target, settings, admin_console=False)  # type: ignore[arg-type]
    stand_in = StandInPool()
    pg.pool = stand_in  # type: ignore[assignment]
    return pg, stand_in


async def poll_cancelled_before_use(pg: PgPool) -> None:
    async with pg.connection():
        raise AssertionError("the poll was cancelled before it could use a connection")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_given_up_attempt_ends_the_wait_with_its_reason(tmp_path: Path) -> None:
    async def scenario() -> tuple[str, list[str]]:
        pg, stand_in = pool_with_stand_in(tmp_path)
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
        pg, stand_in = pool_with_stand_in(tmp_path)
        stand_in.handed.set_result("conn")
        used = []
        async with pg.connection() as conn:
            used.append(conn)
            assert stand_in.returned == []
        return used, stand_in.returned

    assert asyncio.run(scenario()) == (["conn"], ["conn"])


def test_a_deadline_cancel_while_waiting_returns_a_late_connection(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        pg, stand_in = pool_with_stand_in(tmp_path)

        task = asyncio.create_task(poll_cancelled_before_use(pg))
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stand_in.handed.set_result("late connection")
        await settle()
        return stand_in.returned

    assert asyncio.run(scenario()) == ["late connection"]


def test_a_deadline_cancel_right_after_the_hand_over_returns_the_connection(
    tmp_path: Path,
) -> None:
    """The hand-over and the deadline's cancel land in the same loop turn: the connection
    has arrived but the poll never takes it, so it goes back."""
    async def scenario() -> list[str]:
        pg, stand_in = pool_with_stand_in(tmp_path)

        task = asyncio.create_task(poll_cancelled_before_use(pg))
        stand_in.on_handover = task.cancel  # the cancel is on its way as getconn returns
        await settle()
        stand_in.handed.set_result("handed over")
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle()
        return stand_in.returned

    assert asyncio.run(scenario()) == ["handed over"]

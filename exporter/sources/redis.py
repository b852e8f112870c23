"""Redis: one INFO per poll, CONFIG GET maxclients where INFO lacks it and the ACL allows."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, ClassVar

import redis.exceptions

from exporter.collectors import REDIS_COLLECTORS
from exporter.config import Settings
from exporter.connections import PoolStats, RedisClient
from exporter.model import Kind, PollContext
from exporter.sources.base import Fetched, describe, guarded
from exporter.targets import RedisTarget

log = logging.getLogger(__name__)


def _text(value: Any) -> str:
    # "replace": a reply that is not UTF-8 must not fail the whole poll
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisSource:
    kind: ClassVar[Kind] = Kind.REDIS
    phase_group: ClassVar[str | None] = None

    def __init__(self, target: RedisTarget, settings: Settings) -> None:
        self.client = RedisClient(target, settings)
        self._config_get_refused = False  # CONFIG GET denied once, never retried

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()

    def stats(self) -> PoolStats:
        return self.client.stats()

    def stalled_reason(self) -> str | None:
        return None

    async def fetch(self, ctx: PollContext) -> Fetched:
        info = await self.client.client.info()
        if "maxclients" not in info and not self._config_get_refused:
            info = {**info, **await self._config_maxclients(ctx)}
        fetched = Fetched()
        for collector in REDIS_COLLECTORS:
            parse = partial(collector.parse, info, ctx)
            fetched.add(collector.name, guarded(collector.name, parse))
        return fetched

    async def _config_maxclients(self, ctx: PollContext) -> dict[str, Any]:
        """Redis before 6.2 has no maxclients in INFO: ask CONFIG GET if the ACL allows it.

        A refusal (NOPERM, or CONFIG renamed away) only leaves tierwatch_redis_max_clients
        out, and is remembered: every denied call would add an entry to the server's ACL LOG.
        """
        try:
            answer = await self.client.client.config_get("maxclients")
        except redis.exceptions.ResponseError as exc:
            self._config_get_refused = True
            log.info("CONFIG GET maxclients refused on %s, max_clients left out: %s",
                     ctx.target, describe(exc))
            return {}
        for key, value in answer.items():
            if _text(key) == "maxclients":
                return {"maxclients": _text(value)}
        return {}

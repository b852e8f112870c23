"""The registry of sources: the one place that maps a kind of target to its code.

A new kind of target is a new module here with a class following `base.Source`, one entry
in SOURCES, and a target model in config.py whose `kind` names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exporter.config import Settings
from exporter.model import Kind
from exporter.sources.base import Fetched, PollError, Source, describe
from exporter.sources.pgbouncer import PgbouncerSource
from exporter.sources.postgres import PostgresSource
from exporter.sources.redis import RedisSource
from exporter.targets import AnyTarget

SOURCES: dict[Kind, Callable[[Any, Settings], Source]] = {
    Kind.POSTGRES: PostgresSource,
    Kind.PGBOUNCER: PgbouncerSource,
    Kind.REDIS: RedisSource,
}


def source_for(target: AnyTarget, settings: Settings) -> Source:
    return SOURCES[target.kind](target, settings)


__all__ = ["SOURCES", "Fetched", "PollError", "Source", "describe", "source_for"]

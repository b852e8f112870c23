"""PgBouncer's admin console: one SHOW at a time (it takes no multi-statement strings)."""

from __future__ import annotations

from typing import ClassVar

from exporter.collectors import PGBOUNCER_COLLECTORS
from exporter.collectors.base import SqlCollector
from exporter.model import Kind
from exporter.sources.sql import SqlSource


class PgbouncerSource(SqlSource):
    kind: ClassVar[Kind] = Kind.PGBOUNCER
    collectors: ClassVar[tuple[SqlCollector, ...]] = PGBOUNCER_COLLECTORS
    admin_console: ClassVar[bool] = True

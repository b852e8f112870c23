"""What a collector is: a named, stateless reader of one source on one kind of target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

from exporter.model import Fact, Metric, PollContext, Role

Row = Mapping[str, Any]
Output = list[Metric | Fact]


class SqlCollector(Protocol):
    """Reads rows of SQL (PostgreSQL) or admin-console commands (PgBouncer).

    The poller runs the `queries` of all collectors of a target together — for PostgreSQL in
    one round trip — and hands each collector the rows of its own queries, keyed by the query
    text. A collector whose query fails is dropped for that poll (collector_success 0); the
    poll itself still succeeds. `roles` limits a PostgreSQL collector to primaries or
    replicas; its queries still run on both, so they must not raise on the other role
    (guard with CASE WHEN pg_is_in_recovery() ...).
    """

    name: ClassVar[str]
    roles: ClassVar[frozenset[Role]]

    def queries(self, ctx: PollContext) -> Sequence[str]: ...

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output: ...


class InfoCollector(Protocol):
    """Reads Redis `INFO` (already parsed into a flat dict by redis-py)."""

    name: ClassVar[str]

    def parse(self, info: Mapping[str, Any], ctx: PollContext) -> Output: ...


ALL_ROLES: frozenset[Role] = frozenset(Role)

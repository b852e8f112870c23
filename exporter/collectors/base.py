"""What a collector is, and the one table type that maps source columns to metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from exporter.catalogue import MetricSpec
from exporter.model import Metric, PollContext, Role
from exporter.replication import Observation

Row = Mapping[str, Any]
Output = list[Metric | Observation]


class SqlCollector(Protocol):
    """Reads rows of SQL (PostgreSQL) or admin-console commands (PgBouncer).

    The source runs the `queries` of all collectors of a target together — for PostgreSQL in
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


def number(value: Any) -> float | None:
    """A numeric cell or INFO field as float; None for NULL, '', booleans and anything that
    is not a number. PgBouncer sends int, numeric (SHOW STATS) and text (SHOW CONFIG,
    SHOW USERS) cells; redis-py parses INFO numbers, but not always."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value) if isinstance(value, int | float) else float(str(value).strip())
    except (ValueError, OverflowError):  # an integer too large for a float is no reading
        return None


@dataclass(frozen=True, slots=True)
class Column:
    """One source column (the first of `sources` the row has) -> one metric family.

    `factor` converts to base units (microseconds: 1e-6); `labels` are constant label values
    appended after the row's own (e.g. the `state` a SHOW POOLS column stands for).
    """

    sources: tuple[str, ...]
    spec: MetricSpec
    factor: float = 1.0
    labels: tuple[str, ...] = ()

    @classmethod
    def of(cls, source: str, spec: MetricSpec, factor: float = 1.0, *labels: str) -> Column:
        return cls((source,), spec, factor, labels)

    def read(self, row: Row) -> float | None:
        for source in self.sources:
            if source in row:
                value = number(row[source])
                return None if value is None else value * self.factor
        return None


def map_columns(row: Row, columns: Sequence[Column], *labels: str) -> list[Metric]:
    """The metrics of every column the row has a number for; `labels` lead each sample's
    label values (the row's database, user, ...), the column's constant labels follow."""
    out = []
    for column in columns:
        value = column.read(row)
        if value is not None:
            out.append(column.spec(value, *labels, *column.labels))
    return out

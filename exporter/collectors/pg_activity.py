"""pg_stat_activity: client backends by state and by application, oldest open transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from exporter import catalogue as c
from exporter.collectors.base import ALL_ROLES, Output, Row
from exporter.model import PollContext, Role

# One scan of pg_stat_activity (shared memory, not a table), grouped twice. Client backends
# only: walsenders, autovacuum and background workers are not connections an app holds.
# The poll's own backend is in a transaction while this runs, so it is left out of the
# oldest-transaction age (but still counted as a connection: it is one).
ACTIVITY_SQL = """SELECT GROUPING(state) = 0 AS by_state, state, application_name,
  count(*)::float8 AS backends,
  max(extract(epoch FROM now() - xact_start))
    FILTER (WHERE pid <> pg_backend_pid())::float8 AS oldest_xact_seconds
FROM pg_stat_activity
WHERE backend_type = 'client backend'
GROUP BY GROUPING SETS ((state), (application_name))"""

# every state pg_stat_activity documents; each is exported (0 when none) so series stay
STATES = (
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
)
TOP_APPLICATIONS = 20  # the rest summed as application_name="other"
OTHER = "other"


class PgActivity:
    name: ClassVar[str] = "pg_activity"
    roles: ClassVar[frozenset[Role]] = ALL_ROLES

    def queries(self, ctx: PollContext) -> Sequence[str]:
        return (ACTIVITY_SQL,)

    def parse(self, results: Mapping[str, Sequence[Row]], ctx: PollContext) -> Output:
        by_state = dict.fromkeys(STATES, 0.0)
        by_app: dict[str, float] = {}
        oldest = 0.0
        for row in results[ACTIVITY_SQL]:
            count = float(row["backends"])
            if row["by_state"]:
                # NULL: a backend that has not reported a state yet (still starting)
                state = row["state"] if row["state"] is not None else "unknown"
                by_state[state] = by_state.get(state, 0.0) + count
                if row["oldest_xact_seconds"] is not None:
                    oldest = max(oldest, float(row["oldest_xact_seconds"]))
            else:
                app = row["application_name"] or ""
                by_app[app] = by_app.get(app, 0.0) + count
        out: Output = [c.PG_CONNECTIONS(n, state) for state, n in by_state.items()]
        ranked = sorted(by_app.items(), key=lambda item: (-item[1], item[0]))
        top, rest = ranked[:TOP_APPLICATIONS], ranked[TOP_APPLICATIONS:]
        apps = dict(top)
        if rest:
            # an application really named "other" is merged into the bucket, not duplicated
            apps[OTHER] = apps.get(OTHER, 0.0) + sum(n for _, n in rest)
        out.extend(c.PG_APPLICATION_CONNECTIONS(n, app) for app, n in apps.items())
        out.append(c.PG_OLDEST_TRANSACTION(max(0.0, oldest)))
        return out

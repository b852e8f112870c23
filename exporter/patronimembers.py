"""Patroni clusters as an origin of targets: the members last read from each cluster's REST
API become its postgres targets (an inventory `MemberOrigin`), plus the Patroni metrics.

No I/O here: exporter/patroniwatch.py reads `/cluster` every `refresh_interval` and hands
the answer, or the failure, to `update()`. A failed read changes nothing that is watched, so
a Patroni or DCS outage neither drops nor churns the PostgreSQL targets.

A member that leaves `/cluster` is dropped at the next refresh when Patroni said goodbye
(its last state was `stopped`: a clean shutdown). One that vanished while `running` or
`streaming` never said goodbye: its Patroni died with its node, or cannot reach the DCS, and
Patroni lets its key expire after `ttl`. Such a member stays watched (down, most likely) for
`member_grace` seconds, so that TierwatchTargetDown can fire for it instead of the member
silently disappearing 30 s after a crash (docs/patroni.md, "Members that leave").
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from exporter import catalogue as c
from exporter.config import Cluster
from exporter.model import Metric
from exporter.patroni import PatroniMember, member_dsn
from exporter.patroniconfig import PatroniBlock
from exporter.targets import PostgresTarget

log = logging.getLogger(__name__)

GOODBYE_STATE = "stopped"  # what a member's Patroni writes when it shuts down cleanly


@dataclass(slots=True)
class _Known:
    member: PatroniMember  # as last listed
    target: PostgresTarget
    left_at: float | None = None  # monotonic time it was first missing from /cluster


@dataclass(slots=True)
class _View:
    block: PatroniBlock
    up: bool | None = None  # None: never refreshed
    listed: tuple[PatroniMember, ...] = ()  # the last answer
    known: dict[str, _Known] = field(default_factory=dict)  # watched: listed + in grace


def _target(block: PatroniBlock, member: PatroniMember) -> PostgresTarget:
    return PostgresTarget(name=member.name, dsn=member_dsn(block.dsn, member),  # type: ignore[arg-type]
                          password_file=block.password_file, poll_interval=block.poll_interval)


class PatroniMembers:
    """What each Patroni cluster's REST API said last; callable as a MemberOrigin."""

    def __init__(self) -> None:
        self._views: dict[str, _View] = {}

    def _view(self, cluster: Cluster) -> _View | None:
        block = cluster.patroni
        if block is None:
            self._views.pop(cluster.name, None)
            return None
        view = self._views.get(cluster.name)
        if view is None:
            view = self._views[cluster.name] = _View(block)
        elif view.block != block:  # a reload changed the template, password file, ...
            view.block = block
            for known in view.known.values():
                known.target = _target(block, known.member)
        return view

    def __call__(self, cluster: Cluster) -> tuple[PostgresTarget, ...]:
        view = self._view(cluster)
        if view is None:
            return ()
        taken = {t.name for t in cluster.targets()}
        return tuple(k.target for name, k in view.known.items() if name not in taken)

    def pending(self, cluster: Cluster) -> bool:
        """True for a Patroni cluster that was never refreshed."""
        view = self._view(cluster)
        return view is not None and view.up is None

    def update(self, cluster: Cluster, members: tuple[PatroniMember, ...] | None,
               reason: str = "", now: float | None = None) -> bool:
        """Record one refresh (None: no REST API answered); True if the targets changed."""
        view = self._view(cluster)
        if view is None:
            return False
        was_up, view.up = view.up, members is not None
        if members is None:
            if was_up is not False:
                log.warning("cluster %s: %s; keeping its %d known members", cluster.name,
                            reason, len(view.known))
            return False
        if was_up is False:
            log.info("cluster %s: Patroni answers again", cluster.name)
        view.listed = members
        now = time.monotonic() if now is None else now
        return self._merge(cluster.name, view, members, now)

    def _merge(self, name: str, view: _View, members: tuple[PatroniMember, ...],
               now: float) -> bool:
        before = {n: k.target for n, k in view.known.items()}
        listed = {m.name: m for m in members}
        for member in members:
            known = view.known.get(member.name)
            if known is None or (known.member.host, known.member.port) != (member.host,
                                                                           member.port):
                view.known[member.name] = _Known(member, _target(view.block, member))
                log.info("cluster %s: member %s watched (from Patroni)", name, member.name)
            else:
                known.member, known.left_at = member, None
        for gone in [n for n in view.known if n not in listed]:
            self._departed(name, view, gone, now)
        return {n: k.target for n, k in view.known.items()} != before

    def _departed(self, name: str, view: _View, member: str, now: float) -> None:
        known = view.known[member]
        grace = view.block.member_grace
        if known.left_at is None:
            known.left_at = now
            if known.member.state != GOODBYE_STATE and grace > 0:
                log.warning("cluster %s: member %s left /cluster while %s; watched for "
                            "%gs more (member_grace)", name, member, known.member.state, grace)
        if known.member.state == GOODBYE_STATE or now - known.left_at >= grace:
            del view.known[member]
            log.info("cluster %s: member %s no longer watched (left Patroni)", name, member)

    def forget(self, keep: set[str]) -> None:
        """Drop what is known of clusters no longer configured (or no longer Patroni's)."""
        for name in set(self._views) - keep:
            del self._views[name]

    def metrics(self) -> list[Metric]:
        out: list[Metric] = []
        for name, view in sorted(self._views.items()):
            out.append(c.PATRONI_UP(1 if view.up else 0, name))
            if view.up:  # what Patroni said, only while it says it: no frozen roles
                out.extend(c.PATRONI_MEMBER_INFO(1, name, m.name, m.role, m.state)
                           for m in view.listed)
        return out

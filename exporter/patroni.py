"""Patroni's `GET /cluster` answer as typed members, and a member's DSN from the template.

Pure: no I/O. What reaches this module is another program's JSON, so everything is checked
and a member that cannot be watched (no name, no address) is left out rather than failing
the whole answer; only an answer that is not a Patroni cluster at all is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# What a member name must look like to become a `target` label: Patroni's own names are
# host names or similar; anything else (control characters, a megabyte of text) is refused.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}")
_HOST = re.compile(r"[A-Za-z0-9_.:%-]{1,253}")
_LABEL = re.compile(r"[a-z_ ]{1,40}")
MAX_MEMBERS = 64


class PatroniAnswerError(ValueError):
    """The answer is not a Patroni /cluster document; the message is one line."""


@dataclass(frozen=True, slots=True)
class PatroniMember:
    """One member as Patroni reports it. `role` is leader, replica, sync_standby,
    quorum_standby or standby_leader; `state` running, streaming, stopped, starting, ...
    (Patroni's words, kept as they are); `timeline` and `lag` may be unknown."""

    name: str
    host: str
    port: int
    role: str
    state: str
    timeline: int | None = None


def parse_cluster(body: bytes | str) -> tuple[PatroniMember, ...]:
    """The watchable members of a /cluster body, in Patroni's order, one per name."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PatroniAnswerError(f"/cluster is not JSON ({type(exc).__name__})") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("members"), list):
        raise PatroniAnswerError("/cluster has no list of members")
    members: dict[str, PatroniMember] = {}
    for item in doc["members"][:MAX_MEMBERS]:
        member = _member(item)
        if member is not None and member.name not in members:
            members[member.name] = member
    return tuple(members.values())


def _member(item: Any) -> PatroniMember | None:
    if not isinstance(item, Mapping):
        return None
    name, host, port = item.get("name"), item.get("host"), item.get("port")
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        return None
    if not (isinstance(host, str) and _HOST.fullmatch(host)):
        return None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        return None
    timeline = item.get("timeline")
    return PatroniMember(
        name=name, host=host, port=port,
        role=_word(item.get("role")), state=_word(item.get("state")),
        timeline=timeline if isinstance(timeline, int) and not isinstance(timeline, bool)
        else None,
    )


def _word(value: Any) -> str:
    """Patroni's role or state as a label value; anything odd becomes "unknown"."""
    return value if isinstance(value, str) and _LABEL.fullmatch(value) else "unknown"


def member_dsn(template: str, member: PatroniMember) -> str:
    """The template with `{host}` and `{port}` of the member filled in (an IPv6 address in
    brackets, as a URI needs it). Plain replacement, not str.format: a password in the
    template may hold braces."""
    bracket = ":" in member.host and "://" in template and "[{host}]" not in template
    host = f"[{member.host}]" if bracket else member.host
    return template.replace("{host}", host).replace("{port}", str(member.port))

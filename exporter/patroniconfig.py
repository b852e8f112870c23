"""A cluster's `patroni:` block (CONTRACT §6): where its members come from instead of a
`postgres:` list. A model of the settings file, beside config.py to keep that one short."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic.functional_validators import PlainValidator

from exporter.dsn import DsnError, PgDsn
from exporter.durations import parse_duration
from exporter.patroni import PatroniMember, member_dsn
from exporter.targets import Frozen, Seconds, TargetBase

# a member the template is tried on: an invalid template fails at load, not per member
_SAMPLE = PatroniMember("sample", "127.0.0.1", 5432, "leader", "running")
# a departed member stays watched this long by default (docs/patroni.md, "Members that
# leave"): longer than TierwatchTargetDown's `for: 1m` plus Patroni's default ttl of 30 s
# and a few scrapes, so a member whose node died pages before it is forgotten
DEFAULT_MEMBER_GRACE = 300.0


class PatroniBlock(Frozen):
    urls: Annotated[tuple[str, ...], Field(min_length=1, max_length=16)]
    dsn: str
    password_file: Path | None = None
    refresh_interval: Seconds = 5.0
    # poll interval of the members (default: the top-level poll_interval)
    poll_interval: Seconds | None = None
    # how long a member that left /cluster without saying goodbye (a crash) stays watched
    member_grace: Annotated[float, PlainValidator(parse_duration)] = DEFAULT_MEMBER_GRACE

    @field_validator("urls")
    @classmethod
    def _http(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for index, url in enumerate(urls):
            scheme, sep, rest = url.partition("://")
            host = rest.split("/", 1)[0]
            if scheme not in ("http", "https") or not sep or not host:
                raise ValueError(f"[{index}]: must be an http:// or https:// URL")
            if "@" in host:
                # the REST API needs no credentials, and a URL is logged when it fails
                raise ValueError(f"[{index}]: must not carry credentials")
        return urls

    @field_validator("password_file")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        # as for a postgres target: the members are built from this block
        return TargetBase._readable(path)

    @field_validator("dsn")
    @classmethod
    def _template(cls, dsn: str) -> str:
        if "{host}" not in dsn:
            raise ValueError("must contain {host} (and usually {port}), filled in per member")
        try:
            PgDsn(member_dsn(dsn, _SAMPLE))
        except DsnError as exc:
            raise ValueError(str(exc)) from None
        return dsn

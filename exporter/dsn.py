"""Connection strings that never print their password.

Only `connections.py` calls `reveal()`; everything else sees the redacted form.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import psycopg.conninfo


class DsnError(ValueError):
    """A connection string that cannot be used; the message never quotes the input."""


class PgDsn:
    """A libpq connection string (URI or key=value) with the password held apart."""

    __slots__ = ("_params",)

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise DsnError("must be a non-empty PostgreSQL connection string")
        lowered = text.lstrip().lower()
        if "://" in lowered.split("=", 1)[0] and not lowered.startswith(
            ("postgresql://", "postgres://")
        ):
            raise DsnError("scheme must be postgresql:// or postgres://")
        try:
            params = psycopg.conninfo.conninfo_to_dict(text)
        except Exception:  # libpq's message quotes the string, password included
            raise DsnError("is not a valid PostgreSQL connection string") from None
        self._params: dict[str, str] = {k: str(v) for k, v in params.items()}

    @property
    def password(self) -> str | None:
        return self._params.get("password")

    @property
    def host(self) -> str:
        return self._params.get("host", "localhost")

    @property
    def port(self) -> str:
        return self._params.get("port", "5432")

    @property
    def dbname(self) -> str | None:
        return self._params.get("dbname")

    @property
    def user(self) -> str | None:
        return self._params.get("user")

    def reveal(self, **overrides: object) -> dict[str, object]:
        """The real connection parameters, password included: for connections.py only."""
        params: dict[str, object] = dict(self._params)
        params.update({k: v for k, v in overrides.items() if v is not None})
        return params

    def redacted(self) -> str:
        shown = {k: v for k, v in self._params.items() if k != "password"}
        if "password" in self._params:
            shown["password"] = "***"
        return " ".join(f"{k}={v}" for k, v in shown.items())

    def __repr__(self) -> str:
        return f"PgDsn({self.redacted()!r})"

    __str__ = redacted

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PgDsn) and other._params == self._params

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._params.items())))


class RedisUrl:
    """A redis:// or rediss:// URL with its password held apart."""

    __slots__ = ("_password", "_url", "db", "host", "port", "tls", "username")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise DsnError("must be a non-empty redis:// URL")
        try:
            parts = urlsplit(text.strip())
            port = parts.port or 6379
        except ValueError:
            raise DsnError("is not a valid redis:// URL") from None
        if parts.scheme not in ("redis", "rediss"):
            raise DsnError("scheme must be redis:// or rediss://")
        if not parts.hostname:
            raise DsnError("has no host")
        path = parts.path.lstrip("/")
        if path and not path.isdigit():
            raise DsnError("database must be a number, as in redis://host:6379/0")
        self._url = text
        self.host: str = parts.hostname
        self.port: int = port
        self.db: int = int(path) if path else 0
        self.username: str | None = unquote(parts.username) if parts.username else None
        self._password: str | None = unquote(parts.password) if parts.password else None
        self.tls: bool = parts.scheme == "rediss"

    @property
    def password(self) -> str | None:
        return self._password

    def redacted(self) -> str:
        user = f"{self.username}@" if self.username else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{user}{self.host}:{self.port}/{self.db}"

    def __repr__(self) -> str:
        return f"RedisUrl({self.redacted()!r})"

    __str__ = redacted

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RedisUrl) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)

"""The target models of the settings file: one per kind, each naming its kind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema, field_validator
from pydantic.functional_validators import PlainValidator

from exporter.dsn import DsnError, PgDsn, RedisUrl
from exporter.model import Kind


def _address(kind: type[PgDsn] | type[RedisUrl]) -> Callable[[Any], Any]:
    """A pydantic validator that parses a connection string into `kind`, with its error."""

    def parse(value: Any) -> PgDsn | RedisUrl:
        if isinstance(value, kind):
            return value
        if not isinstance(value, str):
            raise ValueError("must be a string")
        try:
            return kind(value)
        except DsnError as exc:
            raise ValueError(str(exc)) from None

    return parse


PgDsnField = Annotated[
    PgDsn, PlainValidator(_address(PgDsn)), PlainSerializer(str),
    WithJsonSchema({"type": "string"}),
]
RedisUrlField = Annotated[
    RedisUrl, PlainValidator(_address(RedisUrl)), PlainSerializer(str),
    WithJsonSchema({"type": "string"}),
]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TargetBase(Frozen):
    kind: ClassVar[Kind]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    password_file: Path | None = None
    poll_interval: Seconds | None = None

    @field_validator("password_file")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise ValueError(f"{path} is not UTF-8 text") from None
        return path

    def address(self) -> PgDsn | RedisUrl:
        raise NotImplementedError

    def password(self) -> str | None:
        """The password_file's content, read fresh at every call so that a rotated secret
        applies at the next (re)connect; else the password in the DSN or URL."""
        if self.password_file is not None:
            text = self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            if text:
                return text
        return self.address().password


class _SqlTarget(TargetBase):
    dsn: PgDsnField

    def address(self) -> PgDsn:
        return self.dsn


class PostgresTarget(_SqlTarget):
    kind: ClassVar[Kind] = Kind.POSTGRES


class PgbouncerTarget(_SqlTarget):
    kind: ClassVar[Kind] = Kind.PGBOUNCER


class RedisTarget(TargetBase):
    kind: ClassVar[Kind] = Kind.REDIS
    url: RedisUrlField

    def address(self) -> RedisUrl:
        return self.url


AnyTarget = PostgresTarget | PgbouncerTarget | RedisTarget

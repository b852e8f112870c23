"""The settings file: loaded once into frozen, validated models; errors name the field path."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import PlainValidator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from exporter.durations import parse_duration, positive_duration
from exporter.patroniconfig import PatroniBlock
from exporter.targets import (
    AnyTarget,
    PgbouncerTarget,
    PostgresTarget,
    RedisTarget,
    Seconds,
    TargetBase,
)
from exporter.targets import Frozen as _Frozen

ENV_CONFIG_PATH = "TIERWATCH_CONFIG"


class ConfigError(Exception):
    """A settings problem, already phrased as the one line the user sees."""


class Cluster(_Frozen):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    postgres: tuple[PostgresTarget, ...] = ()
    pgbouncer: tuple[PgbouncerTarget, ...] = ()
    redis: tuple[RedisTarget, ...] = ()
    # the postgres members from Patroni's REST API instead (inventory's PatroniMembers)
    patroni: PatroniBlock | None = None

    def targets(self) -> tuple[AnyTarget, ...]:
        return (*self.postgres, *self.pgbouncer, *self.redis)

    @model_validator(mode="after")
    def _postgres_or_patroni(self) -> Cluster:
        if self.patroni is not None and self.postgres:
            raise ValueError("patroni: a cluster takes either a postgres list or a patroni "
                             "block, not both (the members come from Patroni)")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Cluster:
        seen: set[str] = set()
        for kind in ("postgres", "pgbouncer", "redis"):
            for index, target in enumerate(getattr(self, kind)):
                if target.name in seen:
                    raise ValueError(
                        f"{kind}[{index}].name: target name {target.name!r} is used twice "
                        f"in cluster {self.name!r}"
                    )
                seen.add(target.name)
        return self


class Shard(_Frozen):
    """This process watches only the clusters whose rendezvous hash picks shard `index`."""

    index: Annotated[int, Field(ge=0)] = 0
    count: Annotated[int, Field(ge=1, le=10_000)] = 1

    @model_validator(mode="after")
    def _index_below_count(self) -> Shard:
        if self.index >= self.count:
            raise ValueError(f"index: must be below count ({self.count})")
        return self


class Routing(_Frozen):
    """The read-routing endpoints (/primary, /replica, /read-only, /cluster; docs/routing.md)."""

    # default replica lag limit of /replica and /read-only when a check gives no ?max_lag=
    max_lag: Annotated[float, PlainValidator(parse_duration)] = 1.0
    # data older than this is never healthy; None: 3 x the target's poll interval
    max_staleness: Annotated[float, PlainValidator(positive_duration)] | None = None
    # serve the routing paths without credentials even when the web-config asks for them
    without_auth: bool = False


class Settings(BaseSettings):
    """Top-level settings; each scalar may be overridden by TIERWATCH_<NAME>
    (nested ones by TIERWATCH_<NAME>__<FIELD>, e.g. TIERWATCH_SHARD__INDEX)."""

    model_config = SettingsConfigDict(
        env_prefix="TIERWATCH_", extra="forbid", frozen=True, case_sensitive=False,
        env_nested_delimiter="__",
    )

    listen: str = "127.0.0.1:9847"
    poll_interval: Seconds = 15.0
    # a poll is abandoned after min(poll_timeout, 0.8 x its interval)
    poll_timeout: Seconds = 10.0
    connect_timeout: Seconds = 3.0
    statement_timeout: Seconds = 5.0
    # random delay added to each poll, at most this many seconds or 10 % of the interval
    poll_jitter: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    pool_max_connections: Annotated[int, Field(ge=1, le=10)] = 2
    log_level: str = "info"
    # exporter-toolkit web-config file: TLS and basic auth for the HTTP server
    web_config_file: Path | None = None
    # keep /healthz and /readyz reachable without credentials (probes of orchestrators)
    health_without_auth: bool = True
    shard: Shard = Shard()
    routing: Routing = Routing()
    # more clusters from YAML files (glob patterns), re-read when they change (file_sd style)
    cluster_files: tuple[str, ...] = ()
    cluster_files_refresh: Seconds = 5.0
    clusters: tuple[Cluster, ...] = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # environment first: TIERWATCH_* overrides what the file says
        return env_settings, init_settings

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port, as in 127.0.0.1:9847")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in ("debug", "info", "warning", "error"):
            raise ValueError("must be one of debug, info, warning, error")
        return value

    @model_validator(mode="after")
    def _unique_clusters(self) -> Settings:
        names = [c.name for c in self.clusters]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"clusters[{index}].name: cluster name {name!r} is used twice")
        return self

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def interval_of(self, target: TargetBase) -> float:
        return target.poll_interval or self.poll_interval

    def deadline_of(self, target: TargetBase) -> float:
        return min(self.poll_timeout, 0.8 * self.interval_of(target))

    def jitter_of(self, target: TargetBase) -> float:
        return min(self.poll_jitter, 0.1 * self.interval_of(target))


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _first_error(path: Path, exc: ValidationError) -> str:
    err = exc.errors(include_input=False, include_url=False)[0]
    msg = str(err.get("msg", "invalid"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    where = _field_path(tuple(err.get("loc", ())))
    if err.get("type") == "extra_forbidden":
        msg = "unknown setting"
    # a model-level validator reports the sub-path inside its message: join them
    if ": " in msg and msg.split(": ", 1)[0].replace("[", ".").replace("]", "").replace(
        ".", ""
    ).replace("_", "").isalnum():
        sub, msg = msg.split(": ", 1)
        where = f"{where}{'' if sub.startswith('[') else '.'}{sub}" if where else sub
    count = exc.error_count()
    more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
    return f"{path}: {where or '(top level)'}: {msg}{more}"


def yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    """Where and what, never the text itself: PyYAML quotes the offending input (str(exc)
    shows the line, `problem` may name a tag or alias), and that input may be a password."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"{path}: invalid YAML"
    mark = exc.problem_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
    problem = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", exc.problem or "syntax error")
    return f"{path}: invalid YAML at {where}: {problem}"


def config_path(cli_value: str | None) -> Path:
    value = cli_value or os.environ.get(ENV_CONFIG_PATH)
    if not value:
        raise ConfigError(f"no config file: pass -c FILE or set {ENV_CONFIG_PATH}")
    return Path(value)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def load_settings(path: Path) -> Settings:
    """Read and validate the settings file; raises ConfigError with one clear line."""
    text = _read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error(path, exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: (top level): must be a mapping of settings")
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_first_error(path, exc)) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {type(exc).__name__}: invalid settings") from None


def all_targets(settings: Settings) -> list[tuple[Cluster, AnyTarget]]:
    return [(cluster, target) for cluster in settings.clusters for target in cluster.targets()]

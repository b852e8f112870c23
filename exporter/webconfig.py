"""The Prometheus exporter `web-config` file: TLS and basic auth for the HTTP server.

Same format as exporter-toolkit's (tls_server_config, basic_auth_users with bcrypt hashes),
so one file serves tierwatch and the other exporters of a fleet.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import ssl
import threading
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from exporter.config import ConfigError, _first_error


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TlsServerConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_auth_type: Literal[
        "NoClientCert", "RequestClientCert", "RequireAnyClientCert",
        "VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
    ] = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: Literal["TLS12", "TLS13"] = "TLS12"


class HttpServerConfig(_Strict):
    headers: dict[str, str] = {}


class WebConfig(_Strict):
    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, str] = {}
    http_server_config: HttpServerConfig = HttpServerConfig()


def load_web_config(path: Path) -> WebConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path}: invalid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: (top level): must be a mapping")
    try:
        config = WebConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_first_error(path, exc)) from None
    for user, hashed in config.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(f"{path}: basic_auth_users.{user}: must be a bcrypt hash")
    if config.tls_server_config is not None:
        ssl_context(config.tls_server_config, path)  # fail now, not at the first request
    return config


def ssl_context(tls: TlsServerConfig, path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if tls.min_version == "TLS13" else ssl.TLSVersion.TLSv1_2
    )
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        if tls.client_ca_file is not None:
            context.load_verify_locations(str(tls.client_ca_file))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or "invalid"
        raise ConfigError(f"{path}: tls_server_config: cannot load certificate or key: "
                          f"{reason}") from None
    context.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_OPTIONAL,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]
    return context


class BasicAuth:
    """Checks `Authorization: Basic ...` against bcrypt hashes.

    bcrypt costs ~50-100 ms per check, far too slow for every scrape, so a verified
    (user, password) pair is remembered as a keyed digest and later compared in constant
    time. An unknown user is checked against a dummy hash so that timing does not tell
    which user names exist.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        import bcrypt  # only where basic auth is configured: 0.3 MB of RSS otherwise

        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=10))
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        digest = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        known = self._verified.get(user)
        if known is not None and hmac.compare_digest(known, digest):
            return True
        hashed = self._users.get(user)
        import bcrypt

        ok = bcrypt.checkpw(password.encode(), hashed if hashed is not None else self._dummy)
        ok = ok and hashed is not None
        if ok:
            with self._lock:
                self._verified[user] = digest
        return ok

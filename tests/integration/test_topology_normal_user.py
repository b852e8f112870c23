"""The harness runs unchanged as a normal user (no runuser), where the packages are present."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import REPO

USER = "tierwatch-ci"
SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path(SYSTEM_PYTHON).exists() or shutil.which("useradd") is None,
    reason="needs root (to create the unprivileged user) and Debian's python3",
)

SCRIPT = """
from tests.topology import Topology
import psycopg, redis
with Topology() as topo:
    assert topo.psql(topo.replica, "SELECT pg_is_in_recovery()") == "t"
    assert redis.Redis.from_url(topo.redis_url()).ping()
    with psycopg.connect(topo.app_dsn_via_pgbouncer(), prepare_threshold=None) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    owners = {Path(f"/proc/{pid}").stat().st_uid for pid in (topo.primary.pid, topo.redis.pid)}
    print("OWNERS", owners)
print("HARNESS OK")
"""


def test_harness_as_a_normal_user() -> None:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
    user = pwd.getpwnam(USER)
    home = Path(user.pw_dir)
    venv = home / "venv"
    as_user = ["runuser", "-u", USER, "--"]
    if not (venv / "bin" / "python").exists():
        subprocess.run([*as_user, SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True)
        subprocess.run([*as_user, str(venv / "bin" / "pip"), "install", "-q",
                        "psycopg[binary]", "redis", "PyYAML"], check=True, timeout=600)
    work = Path(tempfile.mkdtemp(prefix="tierwatch-user-"))
    try:
        shutil.copytree(REPO / "tests", work / "tests",
                        ignore=shutil.ignore_patterns("__pycache__", "data"))
        (work / "run.py").write_text("from pathlib import Path\n" + SCRIPT)
        subprocess.run(["chown", "-R", USER, str(work)], check=True)
        result = subprocess.run([*as_user, str(venv / "bin" / "python"), "run.py"], cwd=work,
                                capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HARNESS OK" in result.stdout
    assert f"OWNERS {{{user.pw_uid}}}" in result.stdout  # everything ran as that user

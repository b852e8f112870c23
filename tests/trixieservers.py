"""Debian 13 ("trixie") servers on this Debian 12 machine: PgBouncer 1.24, Redis 8.0, Valkey 8.1.

Debian 12 packages none of them. Their .debs come from the same Debian registry through a
private apt state (the machine's own apt configuration and package database are untouched),
together with trixie's C library and every shared library the three binaries load. All are
unpacked with `dpkg-deb -x` into one directory beside the PostgreSQL server wheels, and each
binary runs through trixie's own dynamic loader with that directory as its library path. So a
server reads and writes host paths as usual: no chroot, no root needed, nothing installed
system-wide. Installed once, on first use (or `python -m tests.trixieservers`); later runs
download nothing. Files are readable by everyone: PgBouncer runs as `postgres` under root.
"""

from __future__ import annotations

import fcntl
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.serverwheels import CACHE_DIR as SERVERS_DIR

CACHE_DIR = SERVERS_DIR / "trixie"
STAMP = "VERSIONS"  # written last: its presence means the install is complete
SUITE = "trixie"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True)
class Build:
    program: str  # path inside the unpacked root
    version: str  # what `--version` must mention


SERVERS = {
    "pgbouncer-1.24": Build("usr/sbin/pgbouncer", "PgBouncer 1.24."),
    "redis-8.0": Build("usr/bin/redis-server", "v=8.0."),
    "valkey-8.1": Build("usr/bin/valkey-server", "v=8.1."),
}
# The servers and the closure of their shared libraries in trixie (from the packages'
# Depends; the install checks with the loader that nothing is left unresolved). Maintainer
# scripts are never run, so postgresql-common, adduser and the like are not needed.
PACKAGES = (
    "pgbouncer", "redis-server", "redis-tools", "valkey-server", "valkey-tools",
    "libc6", "libgcc-s1", "libstdc++6", "libatomic1", "libssl3t64", "zlib1g", "libzstd1",
    "libevent-2.1-7t64", "libcares2", "libpam0g", "libaudit1", "libcap-ng0", "libsystemd0",
    "libcap2", "libjemalloc2", "liblzf1",
)
# machine -> (multiarch triplet, dynamic loader)
ARCHES = {
    "x86_64": ("x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
    "aarch64": ("aarch64-linux-gnu", "ld-linux-aarch64.so.1"),
}


def _arch() -> tuple[str, str]:
    try:
        return ARCHES[platform.machine()]
    except KeyError:
        raise RuntimeError(f"no trixie loader known for {platform.machine()}") from None


def mirror() -> str:
    """The Debian mirror this machine's apt uses (so CI's registry), else deb.debian.org."""
    try:
        text = SOURCES.read_text()
    except OSError:
        text = ""
    for uri in re.findall(r"^URIs:\s*(\S+)", text, flags=re.MULTILINE):
        if uri.rstrip("/").endswith("/debian"):
            return uri
    return "http://deb.debian.org/debian"


def command(name: str) -> list[str]:
    """The argv prefix that runs server `name` (a key of SERVERS); installs on first use."""
    root = install()
    triplet, loader = _arch()
    lib = root / "usr" / "lib" / triplet
    return [str(lib / loader), "--library-path", f"{lib}:{root / 'lib' / triplet}",
            str(root / SERVERS[name].program)]


def installed_versions() -> str:
    """`package version` lines of the installed .debs."""
    return (install() / STAMP).read_text()


@contextmanager
def _locked() -> Iterator[None]:
    # Several pytest processes may ask at once: one installs, the others wait for it.
    SERVERS_DIR.mkdir(parents=True, exist_ok=True)
    SERVERS_DIR.chmod(0o755)
    with open(SERVERS_DIR / ".trixie.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def install() -> Path:
    """The unpacked root with the trixie servers, downloaded and unpacked when missing."""
    if (CACHE_DIR / STAMP).is_file():
        return CACHE_DIR
    with _locked():
        if not (CACHE_DIR / STAMP).is_file():
            staging = SERVERS_DIR / ".trixie.partial"
            shutil.rmtree(staging, ignore_errors=True)
            root = _unpack(_download(staging), staging / "root")
            _check(root)
            shutil.rmtree(CACHE_DIR, ignore_errors=True)
            root.rename(CACHE_DIR)
            shutil.rmtree(staging, ignore_errors=True)
    return CACHE_DIR


def _apt(state: Path, *args: str, cwd: Path | None = None) -> None:
    options = [
        f"Dir::Etc::sourcelist={state / 'sources.list'}", "Dir::Etc::sourceparts=-",
        f"Dir::State::Lists={state / 'lists'}", f"Dir::Cache={state / 'cache'}",
        "Dir::State::status=/dev/null",  # the host's installed packages play no part
    ]
    if os.geteuid() == 0:
        # as root apt downloads as _apt, which cannot write into our staging dir; the
        # files are still checked against the signed Release file
        options.append("APT::Sandbox::User=root")
    argv = ["apt-get", "-q", *(f"-o{o}" for o in options), *args]
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"apt-get {args[0]} ({SUITE}) failed: "
                           f"{(result.stderr or result.stdout).strip()[-800:]}")


def _download(staging: Path) -> Path:
    state = staging / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True)
    (state / "sources.list").write_text(f"deb [signed-by={KEYRING}] {mirror()} {SUITE} main\n")
    _apt(state, "update")
    debs = staging / "debs"
    debs.mkdir()
    _apt(state, "download", *PACKAGES, cwd=debs)
    return debs


def _unpack(debs: Path, root: Path) -> Path:
    root.mkdir()
    versions = []
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version"],
                                check=True, capture_output=True, text=True).stdout
        versions.append(" ".join(line.split(": ", 1)[1] for line in fields.splitlines()))
    for path in (root, *root.rglob("*")):  # debs ship 0755/0644; be sure nothing is closed
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    (root / STAMP).write_text("\n".join(versions) + "\n")
    return root


def _check(root: Path) -> None:
    """Every server loads all its libraries from `root` and is the version expected."""
    triplet, loader = _arch()
    lib = root / "usr" / "lib" / triplet
    prefix = [str(lib / loader), "--library-path", f"{lib}:{root / 'lib' / triplet}"]
    for name, build in SERVERS.items():
        program = str(root / build.program)
        listed = subprocess.run([*prefix, "--list", program], capture_output=True, text=True)
        missing = [line.strip() for line in listed.stdout.splitlines() if "not found" in line]
        if listed.returncode != 0 or missing:
            raise RuntimeError(f"{name}: unresolved libraries {missing or listed.stderr}")
        out = subprocess.run([*prefix, program, "--version"], capture_output=True, text=True)
        if build.version not in out.stdout:
            raise RuntimeError(f"{name}: expected {build.version!r}, got {out.stdout.strip()!r}")


if __name__ == "__main__":
    print(installed_versions(), end="")
    for server in SERVERS:
        print(" ".join(command(server)))
    sys.exit(0)

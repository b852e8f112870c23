"""A real HAProxy (Debian's 2.6) for the tests, run from deploy/haproxy/haproxy.cfg itself.

The shipped file is used verbatim except for its example addresses, ports and socket path,
so the check lines the tests prove are the ones users copy.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import REPO, wait_until
from tests.topology import HOST, free_port, tcp_accepts

SHIPPED = REPO / "deploy" / "haproxy" / "haproxy.cfg"
TIERWATCH = "10.0.0.10 port 9847"
PRIMARY = "10.0.0.1:5432"
REPLICA = "10.0.0.2:5432"
SOCKET = "/run/haproxy/admin.sock"


def binary() -> str:
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(found).exists():
        raise FileNotFoundError("haproxy not installed (scripts/install-deps.sh installs it)")
    return found


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary(), "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=30)


def _replace(text: str, old: str, new: str, count: int) -> str:
    """`old` -> `new` outside comments, where it must occur exactly `count` times."""
    lines = text.splitlines(keepends=True)
    found = sum(line.count(old) for line in lines if not line.lstrip().startswith("#"))
    if found != count:
        raise AssertionError(f"{SHIPPED.name}: expected {count}x {old!r}, found {found}")
    return "".join(line if line.lstrip().startswith("#") else line.replace(old, new)
                   for line in lines)


class HAProxy:
    """HAProxy with the shipped listeners, pointed at a tierwatch and a topology's servers."""

    def __init__(self, tierwatch: tuple[str, int], primary: tuple[str, int],
                 replica: tuple[str, int]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tierwatch-haproxy-"))
        self.write_port, self.read_port = free_port(), free_port()
        self.socket = self.dir / "admin.sock"
        text = SHIPPED.read_text()
        text = _replace(text, TIERWATCH, f"{tierwatch[0]} port {tierwatch[1]}", 2)
        text = _replace(text, PRIMARY, f"{primary[0]}:{primary[1]}", 2)
        text = _replace(text, REPLICA, f"{replica[0]}:{replica[1]}", 2)
        text = _replace(text, "bind :5000", f"bind {HOST}:{self.write_port}", 1)
        text = _replace(text, "bind :5001", f"bind {HOST}:{self.read_port}", 1)
        text = _replace(text, SOCKET, str(self.socket), 1)
        self.config = self.dir / "haproxy.cfg"
        self.config.write_text(text)
        self.log = self.dir / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HAProxy:
        result = check_config(self.config)
        if result.returncode != 0:
            raise AssertionError(f"haproxy -c: {result.stdout}{result.stderr}")
        with self.log.open("ab") as log:
            # -db: foreground, no daemon; the test owns the process
            self.proc = subprocess.Popen([binary(), "-db", "-f", str(self.config)],
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: self._alive() and tcp_accepts(self.read_port)
                   and tcp_accepts(self.write_port), 10, f"haproxy listening ({self.tail()})")
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"haproxy exited {self.proc.returncode}: {self.tail()}")
        return True

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self, listener: str) -> dict[str, str]:
        """Server name -> HAProxy's view (UP, DOWN, UP 1/2, ...) in `listener`."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {r["svname"]: r["status"] for r in rows
                if r["pxname"] == listener and r["svname"] not in ("FRONTEND", "BACKEND")}

    def tail(self, limit: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_status(proxy: HAProxy, listener: str, server: str, prefix: str,
                timeout: float) -> float:
    """Waits until HAProxy shows `server` as `prefix` (UP, DOWN); returns the time."""
    wait_until(lambda: proxy.status(listener).get(server, "").startswith(prefix), timeout,
               f"haproxy {listener}/{server} {prefix} ({proxy.status(listener)})")
    return time.time()

"""HTTP load against one /metrics: latency p50/p99 and scrapes per second at a concurrency.

wrk (Debian's, C, epoll) is used when installed: on 2 cores a Python client would take a
core from the exporter it measures. Without wrk a small threaded keep-alive client in Python
does the same job (slower: its figures are marked `tool=python`).

Both send what Prometheus sends: `Accept-Encoding: gzip` and the text-format Accept header,
on keep-alive connections (an HTTP/1.0 server that closes after each answer gets a new
connection per scrape, whose connect time is part of the latency, as for Prometheus).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from bench.common import percentile

HEADERS = {
    "Accept": "text/plain;version=0.0.4;q=0.9,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class LoadResult:
    tool: str
    connections: int
    seconds: float
    requests: int
    errors: int  # socket errors, timeouts and non-2xx answers
    p50_ms: float
    p99_ms: float
    rps: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run(url: str, connections: int, seconds: float, cpu: int | None = None) -> LoadResult:
    """`cpu`: run the client on that CPU only (wrk; the Python client ignores it)."""
    if shutil.which("wrk"):
        return run_wrk(url, connections, seconds, cpu)
    return run_python(url, connections, seconds)


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(url: str, connections: int, seconds: float, cpu: int | None = None) -> LoadResult:
    threads = min(2, connections)
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    argv = [*pin, "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--latency", "--timeout", "10s"]
    for name, value in HEADERS.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60,
                         check=True).stdout
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    if total is None or "50" not in pct:
        raise RuntimeError(f"wrk printed no figures:\n{out}")
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     out)
    if sock:
        # not the read errors: wrk counts an HTTP/1.0 server's close after an answer as one
        errors += int(sock.group(1)) + int(sock.group(3)) + int(sock.group(4))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    elapsed = _ms(total.group(2) + total.group(3)) / 1000
    requests = int(total.group(1))
    return LoadResult("wrk", connections, elapsed, requests, errors,
                      _ms(pct["50"]), _ms(pct["99"]), requests / elapsed)


def run_python(url: str, connections: int, seconds: float) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items()) + "\r\n").encode()
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    stop_at = time.perf_counter() + seconds
    start = threading.Barrier(connections + 1)

    def worker(index: int) -> None:
        mine = latencies[index]
        sock: socket.socket | None = None
        start.wait()
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                if sock is None:
                    sock = socket.create_connection((host, port), timeout=10)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(request)
                status, keep = _read_response(sock)
            except OSError:
                errors[index] += 1
                if sock is not None:
                    sock.close()
                sock = None
                continue
            mine.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                errors[index] += 1
            if not keep:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    workers = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(connections)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join(seconds + 30)
    elapsed = time.perf_counter() - began
    merged = [x for part in latencies for x in part]
    return LoadResult("python", connections, elapsed, len(merged), sum(errors),
                      percentile(merged, 50), percentile(merged, 99), len(merged) / elapsed)


def _read_response(sock: socket.socket) -> tuple[int, bool]:
    """Reads one response; returns (status, connection reusable)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the headers")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
    if fields.get("transfer-encoding", "").lower() == "chunked":
        _read_chunked(sock, body)
        return int(status), keep
    length = fields.get("content-length")
    if length is None:  # read to the end: the server closes
        while sock.recv(65536):
            pass
        return int(status), False
    remaining = int(length) - len(body)
    while remaining > 0:
        chunk = sock.recv(min(remaining, 262144))
        if not chunk:
            raise ConnectionError("closed inside the body")
        remaining -= len(chunk)
    return int(status), keep


def _read_chunked(sock: socket.socket, buf: bytes) -> None:
    """Consumes a chunked body (Go's net/http sends gzip that way)."""
    while True:
        while b"\r\n" not in buf:
            buf += _recv(sock)
        size_line, _, buf = buf.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(buf) < size + 2:
            buf += _recv(sock)
        buf = buf[size + 2:]
        if size == 0:
            return


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("closed inside a chunked body")
    return chunk

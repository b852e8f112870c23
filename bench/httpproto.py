"""The HTTP server alone: today's ThreadingHTTPServer against a candidate asyncio responder.

Both serve the same fixed /metrics body (a real tierwatch exposition, gzip-compressed once)
with no daemon behind them, so the figures are the servers' own per-request cost:

- `threaded`: exporter.httpserver.HttpServer itself (the production handler and server),
  in front of a stand-in store that returns the fixed body;
- `threaded-nagle`: the same with Nagle's algorithm on, as before the fix (headers and
  body are two writes, and the body waits for the client's delayed ACK: 40 ms);
- `asyncio`: the candidate, ~40 lines: asyncio.start_server and a tiny HTTP/1.1
  keep-alive responder for GET/HEAD, headers and body in one write, no thread per
  connection and so no GIL hand-offs between 16 threads.

    python -m bench.httpproto serve {threaded|threaded-nagle|asyncio} PORT BODYFILE
"""

from __future__ import annotations

import asyncio
import gzip
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.common import HOST, PYTHON, REPO, Child, free_port, loadavg, log, wait_http

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
# threaded-nagle: today's server with Nagle's algorithm left on, as it was before the fix
KINDS = ("threaded", "asyncio", "threaded-nagle")


class _FixedStore:
    def __init__(self, body: bytes) -> None:
        self._plain = body
        self._gzip = gzip.compress(body, compresslevel=5)

    def body(self, gzipped: bool = False) -> bytes:
        return self._gzip if gzipped else self._plain

    def ready(self) -> bool:
        return True


def serve_threaded(port: int, body: bytes, nagle: bool = False) -> None:
    from exporter import httpserver

    if nagle:  # as it was before docs/benchmarks.md's first fix
        httpserver._Handler.disable_nagle_algorithm = False
    server = httpserver.HttpServer(HOST, port, _FixedStore(body), lambda: True)  # type: ignore[arg-type]
    server.start()
    while True:
        time.sleep(3600)


def serve_asyncio(port: int, body: bytes) -> None:
    store = _FixedStore(body)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                lines = head.split(b"\r\n")
                method, path = lines[0].split(b" ", 2)[:2]
                fields = {k.strip().lower(): v.strip() for k, _, v in
                          (x.partition(b":") for x in lines[1:] if x)}
                gz = b"gzip" in fields.get(b"accept-encoding", b"")
                if path.split(b"?", 1)[0] == b"/metrics":
                    payload, code = store.body(gz), b"200 OK"
                else:
                    payload, code, gz = b"not found\n", b"404 Not Found", False
                close = fields.get(b"connection", b"").lower() == b"close"
                writer.write(b"HTTP/1.1 " + code + b"\r\nContent-Type: " + CONTENT_TYPE
                             + b"\r\nContent-Length: " + str(len(payload)).encode()
                             + (b"\r\nContent-Encoding: gzip" if gz else b"")
                             + (b"\r\nConnection: close" if close else b"") + b"\r\n\r\n"
                             + (payload if method != b"HEAD" else b""))
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, HOST, port, backlog=128)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def run(body: bytes, workdir: Path, rounds: int = 2, seconds: float = 5.0) -> dict[str, Any]:
    """Both servers, alternating, in the three modes of the side-by-side run."""
    from bench.sidebyside import ALL_CPUS, MODES, PIN_CPU, _pin

    body_file = workdir / "exposition.txt"
    body_file.write_bytes(body)
    servers: dict[str, tuple[Child, str]] = {}
    bursts: list[dict[str, Any]] = []
    try:
        for kind in KINDS:
            port = free_port()
            child = Child(f"http {kind}", [PYTHON, "-m", "bench.httpproto", "serve", kind,
                                           str(port), str(body_file)],
                          log_path=workdir / f"httpproto-{kind}.log").start()
            servers[kind] = (child, f"http://{HOST}:{port}/metrics")
            wait_http(f"http://{HOST}:{port}/metrics", child, timeout=30)
        for rnd in range(rounds):
            for kind, (child, url) in servers.items():
                for mode, conns in MODES:
                    cpu = PIN_CPU if mode == "one_core" else None
                    if cpu is not None:
                        _pin(child.pid, str(cpu))
                    try:
                        r = loadgen.run(url, conns, seconds, cpu=cpu)
                    finally:
                        if cpu is not None:
                            _pin(child.pid, ALL_CPUS)
                    bursts.append(r.as_dict() | {"server": kind, "mode": mode, "round": rnd,
                                                 "load1": loadavg()[0]})
                    log(f"http {kind} {mode}: p50 {r.p50_ms:.3f} p99 {r.p99_ms:.3f} ms "
                        f"{r.rps:.0f}/s")
    finally:
        for child, _ in servers.values():
            child.stop()
    summary = {
        kind: {mode: {k: statistics.median(b[k] for b in bursts
                                           if b["server"] == kind and b["mode"] == mode)
                      for k in ("p50_ms", "p99_ms", "rps")} for mode, _ in MODES}
        for kind in servers
    }
    return {"body_bytes": len(body), "summary": summary, "bursts": bursts}


def run_standalone(quick: bool = False, out_dir: Path | None = None) -> dict[str, Any]:
    """A real exposition first (the side-by-side run's, else one poll of a fresh topology's
    four targets), then both servers."""
    import json
    import tempfile

    from bench.sidebyside import EXPOSITION

    saved = out_dir / EXPOSITION if out_dir is not None else None
    if saved is not None and saved.exists():
        workdir = Path(tempfile.mkdtemp(prefix="tierwatch-httpproto-"))
        result = run(saved.read_bytes(), workdir, rounds=1 if quick else 3,
                     seconds=1.0 if quick else 8.0)
        result["quick"] = quick
        name = "httpproto-quick.json" if quick else "httpproto.json"
        saved.with_name(name).write_text(json.dumps(result, indent=2))
        return result

    from bench.renderbench import _poll_once
    from exporter.render import render
    from tests.topology import Topology

    topo = Topology().start()
    try:
        assert topo.workdir is not None
        snaps = asyncio.run(_poll_once(topo.tierwatch_config(poll_interval=15)))
        workdir = topo.workdir / "httpproto"
        workdir.mkdir()
        result = run(render(snaps), workdir, rounds=1 if quick else 3,
                     seconds=1.0 if quick else 8.0)
    finally:
        topo.stop()
    result["quick"] = quick
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        name = "httpproto-quick.json" if quick else "httpproto.json"
        (out_dir / name).write_text(json.dumps(result, indent=2))
    return result


def table(result: dict[str, Any]) -> str:
    lines = ["| server | seq p50 / p99 ms | seq scrapes/s | one core p50 / p99 ms | "
             "one core scrapes/s | c16 p50 / p99 ms | c16 scrapes/s |", "|" + "---|" * 7]
    for kind, modes in result["summary"].items():
        cells = [f"{m['p50_ms']:.3f} / {m['p99_ms']:.3f} | {m['rps']:.0f}"
                 for m in modes.values()]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        data = Path(sys.argv[4]).read_bytes()
        kind, port_arg = sys.argv[2], int(sys.argv[3])
        if kind == "asyncio":
            serve_asyncio(port_arg, data)
        else:
            serve_threaded(port_arg, data, nagle=kind == "threaded-nagle")
    else:
        print(__doc__)

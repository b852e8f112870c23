"""The HTTP side: serves only what is already in memory, from its own threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from exporter import __version__
from exporter.snapshot import SnapshotStore

log = logging.getLogger(__name__)

LANDING = f"""<!doctype html>
<html><head><title>tierwatch</title></head><body>
<h1>tierwatch {__version__}</h1>
<p>Watches PostgreSQL, its replicas, PgBouncer and Redis.</p>
<ul>
<li><a href="/metrics">/metrics</a>: the latest poll results</li>
<li><a href="/healthz">/healthz</a>: the process and its scheduler are alive</li>
<li><a href="/readyz">/readyz</a>: every target has been polled at least once</li>
</ul></body></html>
""".encode()


class _Handler(BaseHTTPRequestHandler):
    store: SnapshotStore
    healthy: Callable[[], bool]
    server_version = f"tierwatch/{__version__}"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            gz = "gzip" in self.headers.get("Accept-Encoding", "")
            body = self.store.body(gzipped=gz)
            self._send(200, body, CONTENT_TYPE_LATEST, gzipped=gz)
        elif path == "/healthz":
            ok = self.healthy()
            self._send(200 if ok else 503, b"ok\n" if ok else b"scheduler stopped\n")
        elif path == "/readyz":
            ok = self.store.ready()
            self._send(200 if ok else 503, b"ready\n" if ok else b"not every target polled yet\n")
        elif path == "/":
            self._send(200, LANDING, "text/html; charset=utf-8")
        else:
            self._send(404, b"not found\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _send(
        self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
        gzipped: bool = False,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("http %s", format % args)


class HttpServer:
    def __init__(
        self, host: str, port: int, store: SnapshotStore, healthy: Callable[[], bool]
    ) -> None:
        handler = type("Handler", (_Handler,), {"store": store, "healthy": staticmethod(healthy)})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

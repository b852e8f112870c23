"""The HTTP side: serves only what is already in memory, from its own threads."""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from exporter import __version__, routeapi
from exporter.config import Routing
from exporter.snapshot import SnapshotStore

if TYPE_CHECKING:
    from exporter.webconfig import BasicAuth, WebConfig

log = logging.getLogger(__name__)


HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


class _Handler(BaseHTTPRequestHandler):
    store: SnapshotStore
    healthy: Callable[[], bool]
    routing: Callable[[], Routing]
    auth: BasicAuth | None
    open_paths: frozenset[str]
    extra_headers: dict[str, str]
    server_version = f"tierwatch/{__version__}"
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that stalls mid-request cannot pin a thread for ever
    # headers and body go out in two writes: with Nagle on, the body waits for the
    # client's delayed ACK of the headers (40 ms per keep-alive scrape; docs/benchmarks.md)
    disable_nagle_algorithm = True

    def _authorized(self, path: str) -> bool:
        if self.auth is None or path in self.open_paths:
            return True
        if routeapi.is_routing_path(path) and self.routing().without_auth:
            return True  # load balancers' checks (routing.without_auth)
        if self.auth.check(self.headers.get("Authorization")):
            return True
        self._send(401, b"unauthorized\n", www_authenticate=True)
        return False

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if not self._authorized(path):
            return
        if routeapi.is_routing_path(path):
            self._route()
        elif path == "/metrics":
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
            limits = self.routing()
            from exporter import statuspage  # on the first visit: memory for a page nobody opened

            page = statuspage.page(self.store, limits.max_lag, limits.max_staleness)
            self._send(200, page, "text/html; charset=utf-8", headers=statuspage.HEADERS)
        else:
            self._send(404, b"not found\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_OPTIONS(self) -> None:
        # HAProxy's `option httpchk` sends OPTIONS unless told otherwise: the routing paths
        # answer it as GET; elsewhere OPTIONS only says which methods there are
        if routeapi.is_routing_path(self.path.split("?", 1)[0]):
            self.do_GET()
        else:
            self._send(204, b"", allow="GET, HEAD, OPTIONS")

    def _route(self) -> None:
        try:
            answer = routeapi.answer(self.path, self.store, self.routing(), time.time())
        except Exception:  # a bug must not become a 500 or a traceback for the balancer
            log.exception("routing check %s failed", self.path.split("?", 1)[0][:200])
            answer = routeapi.Answer(503, b"cannot judge this target: internal error\n")
        self._send(answer.status, answer.body, answer.content_type, no_store=True)

    def _send(
        self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
        gzipped: bool = False, www_authenticate: bool = False, no_store: bool = False,
        allow: str | None = None, headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if no_store:  # a routing answer is true now, not after a proxy's cache
            self.send_header("Cache-Control", "no-store")
        if allow is not None:
            self.send_header("Allow", allow)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        if www_authenticate:
            self.send_header("WWW-Authenticate", 'Basic realm="tierwatch", charset="UTF-8"')
        for name, value in self.extra_headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("http %s", format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def server_bind(self) -> None:
        # HTTPServer's own looks up the listen address's FQDN, for a server_name nothing here
        # reads: a reverse DNS query that holds up start-up while DNS is down (and loads the
        # IDNA codec and unicodedata, 0.2 MB of RSS where no target is named by host name)
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        if self.tls is not None:
            # the handshake happens in the handler's thread, on first read: a slow client
            # must not hold up the accept loop
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("http connection from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        store: SnapshotStore,
        healthy: Callable[[], bool],
        web: WebConfig | None = None,
        web_path: Path | None = None,
        health_without_auth: bool = True,
        routing: Callable[[], Routing] = Routing,
    ) -> None:
        """`routing` returns the routing settings in force (it follows a SIGHUP reload)."""
        auth = None
        if web is not None and web.basic_auth_users:
            from exporter.webconfig import BasicAuth  # only where a web-config is given

            auth = BasicAuth(web.basic_auth_users)
        handler = type("Handler", (_Handler,), {
            "store": store,
            "healthy": staticmethod(healthy),
            "routing": staticmethod(routing),
            "auth": auth,
            "open_paths": HEALTH_PATHS if health_without_auth else frozenset(),
            "extra_headers": dict(web.http_server_config.headers) if web else {},
        })
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port), handler)
        if web is not None and web.tls_server_config is not None:
            from exporter.webconfig import ssl_context

            self._server.tls = ssl_context(web.tls_server_config, web_path or Path("web-config"))
        self.scheme = "https" if self._server.tls else "http"
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

"""The routing endpoints over real HTTP (in-process HttpServer over a filled SnapshotStore):
methods, auth, hostile requests. The decisions on live servers: test_routing.py."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import bcrypt
import pytest

from exporter import catalogue as c
from exporter.config import Routing
from exporter.httpserver import HttpServer
from exporter.model import Kind, TargetId
from exporter.snapshot import SnapshotStore, TargetSnapshot
from exporter.webconfig import WebConfig

PASSWORD = "routing-check-pw"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
PRIMARY = TargetId("main", "primary", Kind.POSTGRES)
REPLICA = TargetId("main", "replica-1", Kind.POSTGRES)


class Server:
    def __init__(self, web: WebConfig | None = None) -> None:
        self.store = SnapshotStore(lambda _snapshots, _daemon: b"# metrics\n")
        self.store.expect([PRIMARY, REPLICA])
        self.routing = Routing()
        self.http = HttpServer("127.0.0.1", 0, self.store, lambda: True, web=web,
                               routing=lambda: self.routing)
        self.http.start()

    def publish(self, target: TargetId, recovery: float, lag: float = 0.0) -> None:
        metrics = [c.PG_IN_RECOVERY(recovery)]
        if recovery:
            metrics += [c.PG_REPLICA_LAG_SECONDS(lag), c.PG_REPLICA_LAG_BYTES(0)]
        self.store.publish(TargetSnapshot(target=target, up=True, polled_at=time.time(),
                                          metrics=tuple(metrics), daemon_metrics=(),
                                          interval=1.0))

    def request(self, method: str, path: str, headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self.http.address, timeout=5)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    s.publish(PRIMARY, 0)
    s.publish(REPLICA, 1, lag=0.2)
    yield s
    s.http.stop()


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_every_method_gets_the_same_verdict(server: Server, method: str) -> None:
    for path, status in (("/replica/main/replica-1", 200), ("/primary/main/replica-1", 503),
                         ("/read-only/main/primary", 200), ("/cluster/main", 200),
                         ("/replica/main/nobody", 404), ("/replica/main/replica-1?max_lag=x", 400)):
        got, headers, body = server.request(method, path)
        assert got == status, (method, path, body)
        assert headers["Cache-Control"] == "no-store"
        if method == "HEAD":
            assert body == b"" and int(headers["Content-Length"]) > 0
        else:
            assert body.endswith(b"\n") and body.count(b"\n") == 1


def test_get_body_is_the_contract_object(server: Server) -> None:
    status, headers, body = server.request("GET", "/replica/main/replica-1?max_lag=100ms")
    assert status == 503 and headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert doc["role"] == "replica" and doc["lag_seconds"] == 0.2 and not doc["healthy"]
    report = json.loads(server.request("GET", "/cluster/main")[2])
    assert report["primary"] == "primary" and len(report["targets"]) == 2


def test_settings_are_read_at_every_request(server: Server) -> None:
    """A SIGHUP swaps the settings the daemon's callable returns; the next check uses them."""
    assert server.request("GET", "/replica/main/replica-1")[0] == 200
    server.routing = Routing(max_lag=0.1)
    try:
        assert server.request("GET", "/replica/main/replica-1")[0] == 503
    finally:
        server.routing = Routing()


def test_other_paths_keep_working_and_options_elsewhere_lists_methods(server: Server) -> None:
    assert server.request("GET", "/metrics")[0] == 200
    assert server.request("GET", "/")[0] == 200
    assert server.request("GET", "/nowhere")[0] == 404
    status, headers, body = server.request("OPTIONS", "/metrics")
    assert status == 204 and "OPTIONS" in headers["Allow"] and body == b""


HOSTILE = [
    "/replica/main/replica-1?max_lag=%ff%fe", "/replica/%ff%fe/x", "/replica/main/%00",
    "/cluster/%", "/replica/main/replica-1?max_lag=1s&max_lag", "/replica/a/b?" + "x" * 6000,
    "/replica/" + "%2F" * 500 + "/x", "/cluster/main?max_lag=99999999999999999999s",
    "/read-only/main/replica-1?max_lag=1e309", "/primary/main/primary#frag",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_requests_get_a_4xx_or_a_verdict_never_a_500(server: Server, path: str) -> None:
    status, _headers, body = server.request("GET", path)
    assert status in (200, 400, 404, 503), (status, body)
    assert b"Traceback" not in body and body.count(b"\n") == 1


def test_a_garbage_request_line_does_not_break_the_server(server: Server) -> None:
    with socket.create_connection(server.http.address, timeout=5) as sock:
        sock.sendall(b"OPTIONS /replica/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.split(b" ", 2)[1] in (b"400", b"404"), reply[:100]
    assert server.request("GET", "/replica/main/replica-1")[0] == 200


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"lb:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def guarded() -> Iterator[Server]:
    s = Server(WebConfig(basic_auth_users={"lb": HASH}))
    s.publish(REPLICA, 1, lag=0.0)
    yield s
    s.http.stop()


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_routing_paths_need_the_metrics_credentials(guarded: Server, method: str) -> None:
    for path in ("/replica/main/replica-1", "/cluster/main", "/replica/nowhere/x"):
        status, headers, _ = guarded.request(method, path)
        assert status == 401 and "WWW-Authenticate" in headers, (method, path)
        assert guarded.request(method, path, basic("wrong"))[0] == 401
    assert guarded.request(method, "/replica/main/replica-1", basic(PASSWORD))[0] == 200
    # OPTIONS elsewhere only lists the methods: nothing to protect
    assert guarded.request(method, "/metrics")[0] == (204 if method == "OPTIONS" else 401)


def test_without_auth_opens_only_the_routing_paths(guarded: Server) -> None:
    guarded.routing = Routing(without_auth=True)
    try:
        got: dict[str, Any] = {p: guarded.request("GET", p)[0] for p in (
            "/replica/main/replica-1", "/cluster/main", "/replica/nowhere/x", "/metrics")}
        assert got == {"/replica/main/replica-1": 200, "/cluster/main": 200,
                       "/replica/nowhere/x": 404, "/metrics": 401}
    finally:
        guarded.routing = Routing()


def test_start_up_asks_no_dns_for_the_listen_address(monkeypatch: pytest.MonkeyPatch) -> None:
    # http.server's own bind looks up the address's FQDN: a stall at start while DNS is down
    def no_dns(*_args: object) -> str:
        raise AssertionError("socket.getfqdn called")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    s = Server()
    try:
        assert s.request("GET", "/healthz")[0] == 200
        assert s.http.address[0] == "127.0.0.1"
    finally:
        s.http.stop()

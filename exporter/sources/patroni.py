"""Patroni's REST API: `GET /cluster` from the first listed member that answers.

Patroni's server speaks HTTP/1.0 and closes the connection after each answer, so one
request is one short-lived connection (asyncio streams, no extra dependency). Each URL gets
`timeout` seconds for the whole exchange (a member whose Patroni hangs accepts the TCP
connection and never answers); one that refuses, times out, answers non-200 or not a
cluster passes the turn to the next. Only the last failure's one-line reason is kept.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from exporter.patroni import PatroniAnswerError, PatroniMember, parse_cluster
from exporter.sources.base import PollError

MAX_BODY = 1 << 20  # a /cluster of 64 members is a few kB; anything bigger is not Patroni


@dataclass(frozen=True, slots=True)
class ClusterAnswer:
    url: str  # the member's REST API that answered
    members: tuple[PatroniMember, ...]


async def read_cluster(urls: Sequence[str], timeout: float) -> ClusterAnswer:
    """The members from the first URL that answers; PollError naming the last failure."""
    reason = "no URL configured"
    for url in urls:
        try:
            async with asyncio.timeout(timeout):
                body = await _get(url, "/cluster")
            return ClusterAnswer(url, parse_cluster(body))
        except (OSError, TimeoutError, PatroniAnswerError, _HttpError) as exc:
            reason = f"{_origin(url)}: {_why(exc)}"
    raise PollError(f"no Patroni REST API answered /cluster (last: {reason})")


class _HttpError(Exception):
    pass


def _origin(url: str) -> str:
    """scheme://host:port only: a URL may carry credentials or a query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or _default_port(parts.scheme)}"


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


async def _get(url: str, path: str) -> bytes:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or _default_port(parts.scheme)
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    reader, writer = await asyncio.open_connection(
        host, port, ssl=tls, server_hostname=host if tls else None)
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {authority}\r\n"
                     "Accept: application/json\r\nUser-Agent: tierwatch\r\n\r\n".encode())
        await writer.drain()
        raw = await _read_all(reader)
    finally:
        writer.close()
    return _body(raw)


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    """Up to EOF (HTTP/1.0: the server closes), refusing more than MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await reader.read(65536):
        size += len(chunk)
        if size > MAX_BODY + 65536:
            raise _HttpError("answer too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _body(raw: bytes) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise _HttpError("not an HTTP answer")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
        raise _HttpError("not an HTTP answer")
    if status_line[1] != b"200":
        raise _HttpError(f"HTTP {status_line[1].decode(errors='replace')[:3]}")
    return body

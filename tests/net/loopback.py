"""Test doubles for net/: a fake resolver, loopback HTTP servers, and a connect guard.

Nothing here sends a packet anywhere but loopback. :class:`ConnectGuard` patches the
lowest connect functions and *refuses* any non-loopback destination, so a policy bug
fails a test instead of reaching the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest

Handler = Callable[["Exchange"], Awaitable[None]]


class FakeDNS:
    """A resolver that answers from a table; a list of answers is served in turn.

    ``turns={"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]}`` answers the first query
    with 127.0.0.1 and every later one with 127.0.0.2. IP literals answer themselves.
    """

    def __init__(
        self,
        table: dict[str, list[str]] | None = None,
        turns: dict[str, list[list[str]]] | None = None,
    ) -> None:
        self.table = dict(table or {})
        self.turns = dict(turns or {})
        self.queries: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        name = host.rstrip(".").lower()
        self.queries.append(name)
        try:
            return [str(ipaddress.ip_address(name.replace("%25", "%")))]
        except ValueError:
            pass
        if name in self.turns:
            answers = self.turns[name]
            return list(answers[min(self.queries.count(name), len(answers)) - 1])
        if name in self.table:
            return list(self.table[name])
        raise socket.gaierror(socket.EAI_NONAME, f"fake DNS: no such name {name}")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass
class ConnectGuard:
    """Records every TCP connect attempt and refuses any that is not to loopback."""

    attempts: list[tuple[str, int]] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original_connect = socket.socket.connect
        original_connect_ex = socket.socket.connect_ex
        original_getaddrinfo = socket.getaddrinfo
        original_anyio_connect = anyio.connect_tcp
        guard = self

        def check(address: Any) -> None:
            if isinstance(address, tuple):
                host, port = str(address[0]), int(address[1])
                guard.attempts.append((host, port))
                if not _is_loopback(host):
                    raise OSError(f"test guard: refused connect to non-loopback {host}")

        def connect(sock: socket.socket, address: Any) -> None:
            check(address)
            original_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            check(address)
            return original_connect_ex(sock, address)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else host
            if name is not None and not _is_loopback(str(name)):
                try:
                    ipaddress.ip_address(str(name).split("%")[0])
                except ValueError as exc:
                    raise OSError(f"test guard: refused DNS lookup of {host}") from exc
            return original_getaddrinfo(host, *args, **kwargs)

        async def anyio_connect_tcp(
            remote_host: Any, remote_port: int, **kw: Any
        ) -> Any:
            check((str(remote_host), remote_port))
            return await original_anyio_connect(remote_host, remote_port, **kw)

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(anyio, "connect_tcp", anyio_connect_tcp)

    def destinations(self) -> set[tuple[str, int]]:
        """Distinct ``(address, port)`` pairs a connect was attempted to."""
        return set(self.attempts)


@dataclass
class Exchange:
    """One request received by a :class:`LoopbackServer`, and the way to answer it."""

    method: str
    path: str
    headers: dict[str, str]
    writer: asyncio.StreamWriter
    keep_alive: bool = False
    body: bytes = b""

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    async def send(
        self, status: int, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if not self.keep_alive:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()


async def ok(exchange: Exchange) -> None:
    """Answer 200 with a small body."""
    await exchange.send(200, [("Content-Type", "text/plain")], b"hello")


async def redirect(exchange: Exchange) -> None:
    """Answer 302 to the ``to`` query parameter."""
    await exchange.send(302, [("Location", exchange.query["to"][0])])


class LoopbackServer:
    """A tiny HTTP/1.1 server on a loopback address that records what reached it.

    With ``keep_alive=True`` a connection serves requests until the client closes it
    (handlers then must not send ``Connection: close``); ``accepted`` counts connections.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        routes: Mapping[str, Handler] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        *,
        keep_alive: bool = False,
    ) -> None:
        self.host = host
        self.keep_alive = keep_alive
        self.routes = {"/ok": ok, "/redirect": redirect, **(routes or {})}
        self.ssl_context = ssl_context
        self.accepted = 0
        self.requests: list[Exchange] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def __aenter__(self) -> LoopbackServer:
        self._server = await asyncio.start_server(
            self._accept, self.host, 0, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            writer.transport.abort()
        except asyncio.CancelledError:
            # The test is over. Not re-raised: Python 3.11's start_server logs a
            # cancelled handler task as an unhandled error.
            writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._serve_one(reader, writer)
        while self.keep_alive and not reader.at_eof():
            try:
                await self._serve_one(reader, writer)
            except asyncio.IncompleteReadError:
                return  # the client closed an idle connection

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {
            k.strip().lower(): v.strip()
            for k, v in (line.split(":", 1) for line in header_lines if ":" in line)
        }
        # read the body (the next request on a kept-alive connection starts after it)
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        exchange = Exchange(method, target, headers, writer, self.keep_alive, body)
        self.requests.append(exchange)
        handler = self.routes.get(urlsplit(target).path)
        if handler is None:
            await exchange.send(404)
        else:
            await handler(exchange)

"""Idle pooled clients give their connections back (issue 9 item 4), with a fake clock.

A client stays in the pool and usable; only its connections close, and only when it
started no request for ``idle_seconds`` and has none in flight (an open stream, such as
an MCP GET stream, keeps it busy).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tether.net import NetworkPolicy
from tether.net.fetch import Fetcher, NetworkProfile

from .loopback import Exchange, FakeDNS, LoopbackServer

A = NetworkProfile(timeout=30.0)
B = NetworkProfile(timeout=31.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def stream_forever(exchange: Exchange) -> None:
    exchange.writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\n: hi\n\r\n"
    )
    await exchange.writer.drain()
    await asyncio.Event().wait()


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    routes = {"/stream": stream_forever}
    async with LoopbackServer("127.0.0.1", routes, keep_alive=True) as srv:
        yield srv


@pytest.fixture
async def fetcher() -> AsyncIterator[tuple[Fetcher, Clock]]:
    clock = Clock()
    fetcher = Fetcher(
        NetworkPolicy.from_allowlist(["mcp.test"]),
        resolver=FakeDNS({"mcp.test": ["127.0.0.1"]}),
        idle_seconds=100,
        clock=clock,
    )
    yield fetcher, clock
    await fetcher.aclose()


async def get(
    fetcher: Fetcher, server: LoopbackServer, profile: NetworkProfile
) -> None:
    response = await fetcher.request(
        "GET",
        f"http://mcp.test:{server.port}/ok",
        profile=profile,
        server="s",
        step="discovery",
    )
    assert response.body == b"hello"


async def test_an_idle_client_closes_its_connections_and_stays_usable(
    server: LoopbackServer, fetcher: tuple[Fetcher, Clock]
) -> None:
    http, clock = fetcher
    await get(http, server, A)
    await get(http, server, A)
    assert server.accepted == 1  # kept alive and reused
    clock.now = 60
    assert await http.close_idle() == 0  # first look: A is noted
    clock.now = 120
    assert await http.close_idle() == 0  # idle 60 s only
    clock.now = 130
    assert await http.close_idle() == 0  # not yet time for another look
    clock.now = 170
    assert await http.close_idle() == 1  # idle 110 s: its connection is closed
    await get(http, server, A)  # the same client, a new connection
    assert server.accepted == 2
    assert http.client(A) is http.client(A)


async def test_a_client_in_use_is_not_closed(
    server: LoopbackServer, fetcher: tuple[Fetcher, Clock]
) -> None:
    http, clock = fetcher
    await get(http, server, B)
    clock.now = 60
    assert await http.close_idle() == 0
    clock.now = 100
    await get(http, server, B)  # activity since the last look
    clock.now = 200
    assert await http.close_idle() == 0  # noted as moving at 200
    async with http.client(A).stream(
        "GET", f"http://mcp.test:{server.port}/stream"
    ) as open_stream:
        assert open_stream.status_code == 200
        clock.now = 500
        assert await http.close_idle() == 1  # B is idle; A was only just seen
        clock.now = 800
        assert await http.close_idle() == 0  # A has a stream open: kept
    clock.now = 1000
    assert await http.close_idle() == 1  # the stream closed: A is idle now
    assert server.accepted == 2


async def test_requests_sweep_on_their_way(
    server: LoopbackServer, fetcher: tuple[Fetcher, Clock]
) -> None:
    http, clock = fetcher
    await get(http, server, A)
    clock.now = 60
    await get(http, server, B)  # looks: A noted at 60
    clock.now = 200
    await get(http, server, B)  # looks: A idle 140 s, closed
    clock.now = 210
    await get(http, server, A)
    assert server.accepted == 3  # A, B, A again

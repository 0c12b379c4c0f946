"""Connections (and TLS) are reused across requests; every new one is still vetted.

Issue #3: the MCP SDK closes an SSE response as soon as the JSON-RPC answer arrives, a
moment before the server ends the stream, and h11 can only reuse a connection whose
response was read to the end. The guarded transport reads (and discards) that remainder
on close, within bounds, so one connection serves a whole session.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx2
import pytest
import trustme
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from peers.fixture import MCPServer
from tether.errors import BlockedDestination, ResponseTooLarge
from tether.net import NetworkPolicy, guarded_client, transport
from tether.net.transport import DRAIN_BYTES, DRAIN_SECONDS, GuardedTransport

from .loopback import ConnectGuard, Exchange, FakeDNS, LoopbackServer


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def start_sse(exchange: Exchange) -> None:
    exchange.writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )


async def answer_then_end(exchange: Exchange) -> None:
    """One event, then (a little later, like a real server) the end of the stream."""
    await start_sse(exchange)
    exchange.writer.write(chunk(b'event: message\ndata: {"id": 1}\n\n'))
    await exchange.writer.drain()
    await asyncio.sleep(0.02)
    exchange.writer.write(chunk(b": bye\n\n") + b"0\r\n\r\n")
    await exchange.writer.drain()


async def answer_then_nothing(exchange: Exchange) -> None:
    """One event, then the stream stays open without a byte (a GET stream)."""
    await start_sse(exchange)
    exchange.writer.write(chunk(b'data: {"id": 1}\n\n'))
    await exchange.writer.drain()
    await asyncio.sleep(3600)


async def answer_then_flood(exchange: Exchange) -> None:
    """One event, then far more than the drain budget."""
    await start_sse(exchange)
    exchange.writer.write(chunk(b'data: {"id": 1}\n\n'))
    await exchange.writer.drain()
    exchange.writer.write(chunk(b": " + b"x" * (4 * DRAIN_BYTES) + b"\n\n"))
    exchange.writer.write(b"0\r\n\r\n")
    await exchange.writer.drain()


async def big(exchange: Exchange) -> None:
    await exchange.send(200, [("Content-Type", "text/plain")], b"x" * 5000)


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    routes = {
        "/answer-then-end": answer_then_end,
        "/answer-then-nothing": answer_then_nothing,
        "/answer-then-flood": answer_then_flood,
        "/big": big,
    }
    async with LoopbackServer("127.0.0.1", routes, keep_alive=True) as srv:
        yield srv


DNS_TABLE = {"mcp.test": ["127.0.0.1"]}


def client(dns: FakeDNS, **kwargs: object) -> httpx2.AsyncClient:
    policy = NetworkPolicy.from_allowlist(["mcp.test"])
    options: dict[str, object] = {"timeout": 30, "follow_redirects": False, **kwargs}
    return guarded_client(policy, resolver=dns, **options)  # type: ignore[arg-type]


async def first_event_then_close(http: httpx2.AsyncClient, url: str) -> None:
    """What the MCP SDK does: stop reading once the answer is in, then close."""
    async with http.stream("POST", url, content=b"{}") as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                break


async def test_one_connection_and_one_lookup_serve_many_requests(
    server: LoopbackServer, guard: ConnectGuard
) -> None:
    dns = FakeDNS(DNS_TABLE)
    async with client(dns) as http:
        for _ in range(5):
            response = await http.get(f"http://mcp.test:{server.port}/ok")
            assert response.text == "hello"
    assert server.accepted == 1
    assert len(server.requests) == 5
    assert dns.queries == ["mcp.test"]  # resolved (and vetted) per new connection
    assert guard.destinations() == {("127.0.0.1", server.port)}


async def test_an_sse_answer_closed_early_is_drained_and_its_connection_reused(
    server: LoopbackServer,
) -> None:
    async with client(FakeDNS(DNS_TABLE)) as http:
        for _ in range(5):
            await first_event_then_close(
                http, f"http://mcp.test:{server.port}/answer-then-end"
            )
    assert server.accepted == 1
    assert len(server.requests) == 5


@pytest.fixture(autouse=True)
def generous_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loaded machine must not push a stream's end past the drain window.

    The servers here end their streams a moment after the answer; with the product's
    window (a quarter second) that moment could be missed on a busy CI machine, and a
    connection that should be reused would be replaced. Tests of the window itself
    put the product value back.
    """
    monkeypatch.setattr(transport, "DRAIN_SECONDS", 30.0)


async def test_tls_is_reused_too(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mcp.test").configure_cert(server_ctx)
    handshakes: list[str | None] = []
    server_ctx.sni_callback = lambda _obj, name, _ctx: handshakes.append(name)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    routes = {"/answer-then-end": answer_then_end}
    async with (
        LoopbackServer("127.0.0.1", routes, server_ctx, keep_alive=True) as srv,
        client(FakeDNS(DNS_TABLE), ca_bundle=str(bundle)) as http,
    ):
        for _ in range(3):
            await first_event_then_close(
                http, f"https://mcp.test:{srv.port}/answer-then-end"
            )
            assert (await http.get(f"https://mcp.test:{srv.port}/ok")).text == "hello"
    assert srv.accepted == 1
    assert handshakes == ["mcp.test"]


async def test_a_stream_that_does_not_end_is_closed_after_the_drain_window(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "DRAIN_SECONDS", DRAIN_SECONDS)  # the product's
    dns = FakeDNS(DNS_TABLE)
    async with client(dns) as http:
        started = time.monotonic()
        with anyio.fail_after(30):  # a hang guard: the stream never ends by itself
            await first_event_then_close(
                http, f"http://mcp.test:{server.port}/answer-then-nothing"
            )
        assert time.monotonic() - started >= DRAIN_SECONDS * 0.9  # waited the window
        assert (await http.get(f"http://mcp.test:{server.port}/ok")).text == "hello"
    assert server.accepted == 2  # the open stream's connection was not reused
    assert dns.queries == ["mcp.test", "mcp.test"]  # and the new one was vetted


async def test_no_more_than_the_drain_budget_is_read(
    server: LoopbackServer,
) -> None:
    async with client(FakeDNS(DNS_TABLE)) as http:
        await first_event_then_close(
            http, f"http://mcp.test:{server.port}/answer-then-flood"
        )
        assert (await http.get(f"http://mcp.test:{server.port}/ok")).text == "hello"
    assert server.accepted == 2


async def test_a_body_over_the_cap_is_not_drained(server: LoopbackServer) -> None:
    async with client(FakeDNS(DNS_TABLE), max_body=1000) as http:
        with pytest.raises(ResponseTooLarge):
            await http.get(f"http://mcp.test:{server.port}/big")
        assert (await http.get(f"http://mcp.test:{server.port}/ok")).text == "hello"
    assert server.accepted == 2


async def test_a_close_cancelled_while_draining_stops_at_once(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drain window is an hour here: only the cancellation can end the close."""
    monkeypatch.setattr(transport, "DRAIN_SECONDS", 3600.0)
    answered = anyio.Event()

    async def close_after_the_answer(http: httpx2.AsyncClient) -> None:
        url = f"http://mcp.test:{server.port}/answer-then-nothing"
        async with http.stream("POST", url, content=b"{}") as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    answered.set()  # the next blocking step is the drain's read
                    break

    async with client(FakeDNS(DNS_TABLE)) as http:
        with anyio.fail_after(30):  # a hang guard: a drain deaf to cancellation
            async with anyio.create_task_group() as tg:
                tg.start_soon(close_after_the_answer, http)
                await answered.wait()
                tg.cancel_scope.cancel()
        assert (await http.get(f"http://mcp.test:{server.port}/ok")).text == "hello"
    assert server.accepted == 2


async def until_connected_twice(guard: ConnectGuard) -> None:
    """Wait (bounded, generously) until the SDK's GET stream has its own connection.

    The POSTs use one connection and the long-lived GET stream another; the guard sees
    each connect twice (anyio, socket), so four attempts mean both exist.
    """
    with anyio.fail_after(60):
        while len(guard.attempts) < 4:  # noqa: ASYNC110 - a counter, not an event
            await anyio.sleep(0.01)


async def test_an_mcp_session_keeps_its_connection_alive(guard: ConnectGuard) -> None:
    """Through the real SDK client and server, whose tools/call answers come as SSE."""
    with MCPServer(None, env={"MCP_PROTOCOL_VERSIONS": "2025-11-25"}) as mcp:
        policy = NetworkPolicy.from_allowlist(["127.0.0.1"])
        async with (
            guarded_client(policy, timeout=10, follow_redirects=False) as http,
            Client(streamable_http_client(mcp.url, http_client=http)) as session,
        ):
            # the SDK opens its GET stream in the background after the handshake,
            # while the first POSTs are in flight: that may take a second connection
            for i in range(5):
                await session.call_tool("echo", {"text": f"warm{i}"})
            await until_connected_twice(guard)
            warm = len(guard.destinations()), len(guard.attempts)
            for i in range(10):
                result = await session.call_tool("echo", {"text": f"t{i}"})
                assert not result.is_error
            sequential = len(guard.attempts) - warm[1]
            await asyncio.gather(
                *(session.call_tool("echo", {"text": f"c{i}"}) for i in range(3))
            )
            for i in range(5):
                await session.call_tool("echo", {"text": f"u{i}"})
            total = len(guard.attempts) - warm[1]
    assert warm[0] == 1  # only the MCP server was dialled
    # The guard sees each connect twice (anyio, socket). Four attempts in the warm-up
    # may be two POST connections while the SDK's background GET stream is still to
    # connect (seen once under load, with conformance running alongside): allow that
    # one late connect. A connection per call would be 20 attempts for these 10.
    assert sequential <= 2
    # three calls at once need up to two more connections (one request at a time
    # per HTTP/1.1 connection), plus that late GET stream
    assert total <= 2 * 2 + 2


async def test_an_origin_that_passed_is_still_refused_with_user_info(
    server: LoopbackServer,
) -> None:
    """The transport remembers passed URL checks by scheme, host, port and user info."""
    async with client(FakeDNS(DNS_TABLE)) as http:
        assert (await http.get(f"http://mcp.test:{server.port}/ok")).text == "hello"
        with pytest.raises(BlockedDestination, match="user name or password"):
            await http.get(f"http://a:b@mcp.test:{server.port}/ok")
        with pytest.raises(BlockedDestination, match="HTTPS is required"):
            await http.get(f"http://other.test:{server.port}/ok")
    assert len(server.requests) == 1


async def test_an_idle_connection_the_server_closed_is_not_reused(
    server: LoopbackServer,
) -> None:
    hung_up = asyncio.Event()

    async def ok_then_hang_up(exchange: Exchange) -> None:
        """Answer as if keeping the connection, then close it while it is idle."""
        await exchange.send(200, [("Content-Type", "text/plain")], b"bye")
        exchange.writer.close()
        await exchange.writer.wait_closed()  # the FIN is on its way on loopback
        hung_up.set()

    server.routes["/ok-then-hang-up"] = ok_then_hang_up
    dns = FakeDNS(DNS_TABLE)
    async with client(dns) as http:
        assert (await http.get(f"http://mcp.test:{server.port}/ok-then-hang-up")).text
        with anyio.fail_after(30):  # a hang guard only
            await hung_up.wait()
        assert (await http.get(f"http://mcp.test:{server.port}/ok")).text == "hello"
    assert server.accepted == 2
    assert dns.queries == ["mcp.test", "mcp.test"]


async def test_a_burst_of_callers_leaves_its_connections_for_the_next_burst() -> None:
    """Issue 9 item 4: connections ≈ concurrent callers, not callers + churn.

    50 requests are held at the server until all 50 have arrived (so they need 50
    connections at once); the next 50 then find 50 kept-alive connections.
    """
    callers = 50
    arrived = 0
    all_in = asyncio.Event()

    async def held(exchange: Exchange) -> None:
        nonlocal arrived
        arrived += 1
        if arrived % callers == 0:
            all_in.set()
        await all_in.wait()
        await exchange.send(200, [("Content-Type", "text/plain")], b"ok")

    async with LoopbackServer("127.0.0.1", {"/held": held}, keep_alive=True) as server:
        # the transport's defaults, but idle connections kept long enough for a
        # loaded machine to start the second burst
        transport = GuardedTransport(
            NetworkPolicy.from_allowlist(["mcp.test"]),
            ssl_context=ssl.create_default_context(),
            resolver=FakeDNS(DNS_TABLE),
            keepalive_expiry=3600,
        )
        async with httpx2.AsyncClient(transport=transport, timeout=60) as http:
            url = f"http://mcp.test:{server.port}/held"
            for _ in range(2):
                all_in.clear()
                answers = await asyncio.gather(*(http.get(url) for _ in range(callers)))
                assert {a.text for a in answers} == {"ok"}
        assert len(server.requests) == 2 * callers
        assert server.accepted == callers

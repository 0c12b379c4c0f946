"""The guarded backend and transport on real loopback sockets, with a fake resolver.

requirements.md: SSRF-2 (http only to allowlisted loopback), SSRF-5 (resolve once, pin
the checked address, TLS on the original name) and SSRF-8 (size cap, timeouts).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpcore2
import httpx2
import pytest
import trustme

from tether.errors import (
    BlockedDestination,
    NetworkError,
    RequestTimeout,
    ResponseTooLarge,
    TetherError,
    UsageError,
)
from tether.net import (
    GuardedBackend,
    NetworkPolicy,
    guarded_client,
    system_resolver,
    vet_url,
)
from tether.net.backend import _KeptStream
from tether.net.transport import (
    LONG_LIVED,
    CappedStream,
    GuardedTransport,
    event_sizes,
    map_httpcore_errors,
)

from .loopback import ConnectGuard, Exchange, FakeDNS, LoopbackServer

CHUNK = b"x" * 65536


async def endless(exchange: Exchange) -> None:
    """A chunked body that never ends, sent as fast as the client reads."""
    exchange.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    frame = b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n"
    while True:
        exchange.writer.write(frame)
        await exchange.writer.drain()


async def six_megabytes(exchange: Exchange) -> None:
    """A declared 6 MB body."""
    total = 6 * 1024 * 1024
    exchange.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
    for _ in range(total // len(CHUNK)):
        exchange.writer.write(CHUNK)
        await exchange.writer.drain()


def sse(events: list[bytes], forever: bytes | None = None) -> Any:
    """An event stream of the given events, then ``forever`` every 50 ms, or the end."""

    async def handler(exchange: Exchange) -> None:
        exchange.writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for event in [*events, *([] if forever is None else [forever])]:
            exchange.writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await exchange.writer.drain()
        while forever is not None:
            await asyncio.sleep(0.05)
            exchange.writer.write(b"%x\r\n%s\r\n" % (len(forever), forever))
            await exchange.writer.drain()
        exchange.writer.write(b"0\r\n\r\n")
        await exchange.writer.drain()

    return handler


async def silent(exchange: Exchange) -> None:
    """Accept the request and never answer."""
    await asyncio.sleep(3600)


ROUTES = {
    "/endless": endless,
    "/six": six_megabytes,
    "/silent": silent,
    "/trickle": sse([], forever=b": keep-alive\n\n"),
    "/events": sse([b"data: " + b"e" * 90 + b"\n\n"] * 50),
    "/huge-event": sse([b"data: " + b"e" * 2000 + b"\n\n"]),
}


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    async with LoopbackServer("127.0.0.1", ROUTES) as srv:
        yield srv


def client_for(allow: list[str], dns: FakeDNS, **kwargs: Any) -> httpx2.AsyncClient:
    options: dict[str, Any] = {"timeout": 5.0, "follow_redirects": False}
    options.update(kwargs)
    return guarded_client(NetworkPolicy.from_allowlist(allow), resolver=dns, **options)


async def test_ssrf2_allowlisted_loopback_works_over_http(
    server: LoopbackServer, guard: ConnectGuard
) -> None:
    dns = FakeDNS({"dev.test": ["127.0.0.1"]})
    async with client_for(["dev.test"], dns) as client:
        response = await client.get(f"http://dev.test:{server.port}/ok")
    assert response.status_code == 200
    assert response.text == "hello"
    assert server.requests[0].headers["host"] == f"dev.test:{server.port}"
    assert dns.queries == ["dev.test"]
    assert guard.destinations() == {("127.0.0.1", server.port)}


async def test_ssrf2_allowlisted_private_address_still_needs_https(
    guard: ConnectGuard,
) -> None:
    dns = FakeDNS({"intra.test": ["10.0.0.5"]})
    async with client_for(["intra.test"], dns) as client:
        with pytest.raises(BlockedDestination, match="HTTPS is required") as caught:
            await client.get("http://intra.test/")
    assert caught.value.details["address"] == "10.0.0.5"
    async with client_for(["10.0.0.0/8"], dns) as client:
        with pytest.raises(BlockedDestination, match="HTTPS is required"):
            await client.get("http://intra.test/")
    assert guard.attempts == []


async def test_ssrf5_resolves_once_and_pins_the_checked_address(
    server: LoopbackServer, guard: ConnectGuard
) -> None:
    """A rebinding resolver's second answer is never used for the checked connection."""
    async with LoopbackServer("127.0.0.2") as trap:
        dns = FakeDNS(turns={"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
        async with client_for(["127.0.0.1/32"], dns) as client:
            first = await client.get(f"http://rebind.test:{server.port}/ok")
            assert first.status_code == 200
            assert dns.queries == ["rebind.test"]
            # The server closed the connection, so the next request reconnects,
            # resolves again, and gets the internal answer: refused before connect.
            with pytest.raises(BlockedDestination, match=r"127\.0\.0\.2"):
                await client.get(f"http://rebind.test:{trap.port}/ok")
    assert trap.accepted == 0
    assert guard.destinations() == {("127.0.0.1", server.port)}


async def test_ssrf5_tries_each_checked_address_in_turn(
    server: LoopbackServer, guard: ConnectGuard
) -> None:
    dns = FakeDNS({"dual.test": ["::1", "127.0.0.1"]})
    async with client_for(["dual.test"], dns) as client:
        response = await client.get(f"http://dual.test:{server.port}/ok")
    assert response.status_code == 200
    assert guard.destinations() == {("::1", server.port), ("127.0.0.1", server.port)}


async def test_connection_refused_is_a_network_error_naming_the_host() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dns = FakeDNS({"down.test": ["127.0.0.1"]})
    async with client_for(["down.test"], dns) as client:
        with pytest.raises(NetworkError) as caught:
            await client.get(f"http://down.test:{port}/")
    assert type(caught.value) is NetworkError
    assert "down.test" in str(caught.value)


async def test_unknown_name_is_a_network_error() -> None:
    async with client_for(["nowhere.test"], FakeDNS()) as client:
        with pytest.raises(NetworkError, match=r"could not resolve nowhere\.test"):
            await client.get("http://nowhere.test/")


async def test_slow_resolver_trips_the_connect_timeout() -> None:
    async def stuck(host: str, port: int) -> list[str]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    policy = NetworkPolicy.from_allowlist(["slow.test"])
    async with guarded_client(
        policy, timeout=5, connect_timeout=0.1, follow_redirects=False, resolver=stuck
    ) as client:
        with pytest.raises(RequestTimeout, match="connect timed out"):
            await client.get("http://slow.test/")


async def test_ssrf8_read_timeout(server: LoopbackServer) -> None:
    dns = FakeDNS({"dev.test": ["127.0.0.1"]})
    async with client_for(["dev.test"], dns, timeout=0.2) as client:
        with pytest.raises(
            RequestTimeout, match=r"read timed out talking to dev\.test"
        ):
            await client.get(f"http://dev.test:{server.port}/silent")


# ----------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _tls_get(
    ca: trustme.CA, tmp_path: Path, cert_names: list[str], *, with_bundle: bool
) -> tuple[httpx2.Response | TetherError, list[str | None]]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*cert_names).configure_cert(server_ctx)
    sni: list[str | None] = []

    def record_sni(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sni.append(name)

    server_ctx.sni_callback = record_sni
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    dns = FakeDNS({"mcp.test": ["127.0.0.1"]})
    async with LoopbackServer("127.0.0.1", ssl_context=server_ctx) as srv:
        ca_bundle = str(bundle) if with_bundle else None
        async with client_for(["mcp.test"], dns, ca_bundle=ca_bundle) as client:
            try:
                response = await client.get(f"https://mcp.test:{srv.port}/ok")
            except TetherError as exc:
                return exc, sni
        assert srv.requests[0].headers["host"] == f"mcp.test:{srv.port}"
    return response, sni


async def test_ssrf5_tls_verifies_the_original_host_name_with_a_ca_bundle(
    ca: trustme.CA, tmp_path: Path
) -> None:
    result, sni = await _tls_get(ca, tmp_path, ["mcp.test"], with_bundle=True)
    assert isinstance(result, httpx2.Response)
    assert result.text == "hello"
    assert sni == ["mcp.test"]  # connected to 127.0.0.1, but SNI names the host


async def test_tls_without_the_ca_bundle_fails_naming_the_certificate(
    ca: trustme.CA, tmp_path: Path
) -> None:
    result, _ = await _tls_get(ca, tmp_path, ["mcp.test"], with_bundle=False)
    assert isinstance(result, NetworkError)
    assert "certificate" in str(result)
    assert "mcp.test" in str(result)
    assert result.hint is not None
    assert "CA bundle" in result.hint


async def test_tls_certificate_for_another_name_is_refused(
    ca: trustme.CA, tmp_path: Path
) -> None:
    result, _ = await _tls_get(ca, tmp_path, ["other.test"], with_bundle=True)
    assert isinstance(result, NetworkError)
    assert "certificate verification failed for mcp.test" in str(result)


# -------------------------------------------------------------------- body cap


async def test_ssrf8_endless_body_stops_at_the_cap(server: LoopbackServer) -> None:
    dns = FakeDNS({"dev.test": ["127.0.0.1"]})
    received = 0

    async def drain(response: httpx2.Response) -> None:
        nonlocal received
        async for chunk in response.aiter_raw():
            received += len(chunk)

    url = f"http://dev.test:{server.port}/endless"
    async with (
        client_for(["dev.test"], dns, max_body=1024 * 1024) as client,
        client.stream("GET", url) as response,
    ):
        with pytest.raises(ResponseTooLarge, match="larger than 1048576 bytes"):
            await drain(response)
    assert received <= 1024 * 1024


async def test_ssrf8_default_cap_is_five_megabytes(server: LoopbackServer) -> None:
    dns = FakeDNS({"dev.test": ["127.0.0.1"]})
    async with client_for(["dev.test"], dns) as client:
        with pytest.raises(ResponseTooLarge, match=str(5 * 1024 * 1024)):
            await client.get(f"http://dev.test:{server.port}/six")
        small = await client.get(f"http://dev.test:{server.port}/ok")
    assert small.text == "hello"


async def test_ssrf8_sse_cap_applies_per_event(server: LoopbackServer) -> None:
    dns = FakeDNS({"dev.test": ["127.0.0.1"]})
    async with client_for(["dev.test"], dns, max_body=1000) as client:
        url = f"http://dev.test:{server.port}"
        async with client.stream("GET", f"{url}/events") as response:
            body = b"".join([part async for part in response.aiter_bytes()])
        assert body.count(b"data: ") == 50  # 5 kB in total, each event < 1000 bytes
        with pytest.raises(ResponseTooLarge, match=r"an event from dev\.test"):
            await client.get(f"{url}/huge-event")


@pytest.mark.parametrize(
    ("counted", "tail", "chunk", "expected"),
    [
        (0, b"", b"data: a", ([], 7, b": a")),
        (0, b"", b"data: a\n\n", ([9], 0, b"a\n\n")),
        (5, b"a\r\n", b"\r\ndata: b", ([7], 7, b": b")),  # boundary across chunks
        (0, b"", b"a\r\rdata", ([3], 4, b"ata")),
        (0, b"", b"a\n\nbb\n\nc", ([3, 4], 1, b"\n\nc")),
        (2, b"\n\nc", b"dd", ([], 4, b"cdd")),  # old boundary in the tail is skipped
    ],
)
def test_sse_event_sizes(
    counted: int, tail: bytes, chunk: bytes, expected: tuple[list[int], int, bytes]
) -> None:
    assert event_sizes(counted, tail, chunk) == expected


async def test_capped_stream_pulls_no_more_than_needed() -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 100

    stream = CappedStream(body(), host="h", limit=1000)
    with pytest.raises(ResponseTooLarge):
        async for _ in stream:
            pass
    assert pulled == 11
    await stream.aclose()  # an async generator without aclose is fine too
    await CappedStream([b"x"], host="h", limit=None).aclose()  # type: ignore[arg-type]


# -------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("raised", "expected", "text"),
    [
        (
            httpcore2.ConnectTimeout("x"),
            RequestTimeout,
            "connect timed out talking to h",
        ),
        (httpcore2.ReadTimeout("x"), RequestTimeout, "read timed out"),
        (httpcore2.WriteTimeout("x"), RequestTimeout, "write timed out"),
        (httpcore2.PoolTimeout("x"), RequestTimeout, "pool timed out"),
        (httpcore2.TimeoutException("x"), RequestTimeout, "timed out"),
        (httpcore2.ConnectError("refused"), NetworkError, "could not connect to h"),
        (httpcore2.ConnectError(""), NetworkError, "connection failed"),
        (httpcore2.ReadError("reset"), NetworkError, "connection to h failed"),
        (httpcore2.WriteError("pipe"), NetworkError, "connection to h failed"),
        (httpcore2.RemoteProtocolError("bad"), NetworkError, "broke the HTTP"),
        (httpcore2.LocalProtocolError("bad"), UsageError, "invalid HTTP request"),
        (httpcore2.UnsupportedProtocol("x"), BlockedDestination, "refused"),
    ],
)
def test_map_httpcore_errors(
    raised: Exception, expected: type[TetherError], text: str
) -> None:
    with pytest.raises(expected, match=text) as caught, map_httpcore_errors("h"):
        raise raised
    assert caught.value.__cause__ is raised


def test_map_httpcore_errors_names_tls_failures() -> None:
    def failing_handshake() -> None:
        try:
            raise ssl.SSLError(1, "wrong version number")
        except ssl.SSLError as exc:
            raise httpcore2.ConnectError(str(exc)) from exc

    with (
        pytest.raises(NetworkError, match="TLS handshake with h"),
        map_httpcore_errors("h"),
    ):
        failing_handshake()


def test_map_httpcore_errors_lets_tether_errors_through() -> None:
    error = BlockedDestination("no")
    with pytest.raises(BlockedDestination) as caught, map_httpcore_errors("h"):
        raise error
    assert caught.value is error


async def test_backend_refuses_unix_sockets_and_sleeps() -> None:
    backend = GuardedBackend(NetworkPolicy(), scheme="https")
    with pytest.raises(httpcore2.UnsupportedProtocol):
        await backend.connect_unix_socket("/tmp/x.sock")
    await backend.sleep(0)


async def test_system_resolver_reads_ip_literals_without_dns() -> None:
    assert await system_resolver("127.0.0.1", 80) == ["127.0.0.1"]


def test_guarded_client_is_a_plain_httpx2_client() -> None:
    make: Callable[..., httpx2.AsyncClient] = guarded_client
    client = make(NetworkPolicy(), timeout=1, follow_redirects=False)
    assert isinstance(client, httpx2.AsyncClient)
    assert client.follow_redirects is False


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://mcp.example.com/mcp", ("93.184.215.14", "2606:4700:4700::1111")),
        ("http://dev.test:8000/", ("127.0.0.1",)),
        ("https://[2606:4700:4700::1111]:8443/", ("2606:4700:4700::1111",)),
    ],
)
async def test_vet_url_checks_every_address_without_connecting(
    url: str, expected: tuple[str, ...], guard: ConnectGuard
) -> None:
    dns = FakeDNS(
        {
            "mcp.example.com": ["93.184.215.14", "2606:4700:4700::1111"],
            "dev.test": ["127.0.0.1"],
        }
    )
    policy = NetworkPolicy.from_allowlist(["dev.test"])
    checked = await vet_url(policy, url, resolver=dns)
    assert tuple(str(a) for a in checked) == expected
    assert guard.attempts == []


async def test_vet_url_refuses_private_answers_and_unknown_names() -> None:
    dns = FakeDNS({"sneaky.example.com": ["93.184.215.14", "10.0.0.1"]})
    with pytest.raises(BlockedDestination, match="private"):
        await vet_url(NetworkPolicy(), "https://sneaky.example.com/", resolver=dns)
    with pytest.raises(NetworkError, match="could not resolve"):
        await vet_url(NetworkPolicy(), "https://gone.example.com/", resolver=dns)


class _HangingHandshake(httpcore2.AsyncNetworkStream):
    """A connected stream whose TLS handshake never finishes (or fails at once)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.entered = anyio.Event()
        self.closed = 0

    async def read(
        self,
        max_bytes: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
    ) -> bytes:
        raise NotImplementedError

    async def write(
        self,
        buffer: bytes,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
    ) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        self.closed += 1

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
    ) -> httpcore2.AsyncNetworkStream:
        self.entered.set()
        if self.fail:
            raise httpcore2.ConnectError("handshake failed")
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    def get_extra_info(self, info: str) -> Any:
        return None


@pytest.mark.parametrize("fail", [False, True])
async def test_a_cancelled_or_failed_tls_handshake_closes_the_socket(
    fail: bool,
) -> None:
    """Cancelled mid-handshake (a deadline, a closing session), the TCP socket is
    closed at once instead of being left to the garbage collector."""
    inner = _HangingHandshake(fail=fail)
    kept = _KeptStream(inner)
    scope = anyio.CancelScope()
    failures: list[BaseException] = []

    async def handshake() -> None:
        with scope:
            try:
                await kept.start_tls(ssl.create_default_context(), "dev.test")
            except httpcore2.ConnectError as exc:
                failures.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(handshake)
        await inner.entered.wait()
        scope.cancel()
    assert inner.closed >= 1
    assert scope.cancelled_caught is not fail
    assert len(failures) == int(fail)


async def test_long_lived_streams_never_hold_a_request_connection(
    server: LoopbackServer,
) -> None:
    """Streams marked LONG_LIVED use a pool of their own (issue 9).

    One request connection and two open streams: the request still gets its
    connection. Before the stream pool, the streams held the request pool's
    connections and the request waited for ever. 30 s is only a hang guard.
    """
    dns = FakeDNS({"dev.test": ["127.0.0.1"]})
    transport = GuardedTransport(
        NetworkPolicy.from_allowlist(["dev.test"]),
        ssl_context=ssl.create_default_context(),
        resolver=dns,
        max_connections=1,
        max_streams=2,
    )
    url = f"http://dev.test:{server.port}"
    async with httpx2.AsyncClient(transport=transport, timeout=30.0) as client:
        streams = [
            await client.send(
                client.build_request(
                    "GET", f"{url}/trickle", extensions={LONG_LIVED: True}
                ),
                stream=True,
            )
            for _ in range(2)
        ]
        with anyio.fail_after(30):
            response = await client.get(f"{url}/events")
            assert response.content.count(b"data: ") == 50
            again = await client.get(f"{url}/events")  # the one connection, reused
            assert again.status_code == 200
        for stream in streams:
            assert stream.status_code == 200
            await stream.aclose()

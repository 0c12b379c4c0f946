"""The client factory, the overall deadline and the error seam (SSRF-4, SSRF-8)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from tether.errors import (
    BlockedDestination,
    ConfigurationError,
    NetworkError,
    RemoteError,
    RequestTimeout,
    TetherError,
    UsageError,
)
from tether.net import (
    NetworkPolicy,
    deadline,
    guarded_client,
    make_ssl_context,
    mapped_errors,
)

from .loopback import ConnectGuard, Exchange, FakeDNS, LoopbackServer


async def keep_alive_forever(exchange: Exchange) -> None:
    """An SSE stream of keep-alive comments every 50 ms, never an event."""
    exchange.writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    while True:
        exchange.writer.write(b"e\r\n: keep-alive\n\n\r\n")
        await exchange.writer.drain()
        await asyncio.sleep(0.05)


async def loop(exchange: Exchange) -> None:
    """Redirect to itself forever."""
    await exchange.send(302, [("Location", "/loop")])


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    routes = {"/keepalive": keep_alive_forever, "/loop": loop}
    async with LoopbackServer("127.0.0.1", routes) as srv:
        yield srv


DNS = FakeDNS({"dev.test": ["127.0.0.1"]})
DEV = NetworkPolicy.from_allowlist(["dev.test"])


async def test_ssrf8_deadline_stops_a_server_that_streams_keep_alives_forever(
    server: LoopbackServer,
) -> None:
    url = f"http://dev.test:{server.port}/keepalive"
    received = 0

    async def listen(client: httpx2.AsyncClient) -> None:
        nonlocal received
        async with (
            deadline(0.4, server="dev", step="tools/list"),
            client.stream("GET", url) as response,
        ):
            async for chunk in response.aiter_bytes():
                received += len(chunk)

    async with guarded_client(
        DEV, timeout=1, follow_redirects=False, resolver=DNS
    ) as client:
        with pytest.raises(RequestTimeout) as caught:
            await listen(client)
    assert received > 0  # the read timeout alone would never have fired
    assert caught.value.server == "dev"
    assert caught.value.step == "tools/list"
    assert "0.4 s" in str(caught.value)


async def test_deadline_is_silent_when_met() -> None:
    async with deadline(5):
        await asyncio.sleep(0)


async def test_ssrf4_redirect_hops_are_capped(
    server: LoopbackServer, guard: ConnectGuard
) -> None:
    async with guarded_client(
        DEV, timeout=30, follow_redirects=True, max_redirects=3, resolver=DNS
    ) as client:
        with (
            pytest.raises(BlockedDestination, match="too many redirects") as caught,
            mapped_errors(server="dev", step="discovery"),
        ):
            await client.get(f"http://dev.test:{server.port}/loop")
    assert len(server.requests) == 4
    assert caught.value.server == "dev"
    assert guard.destinations() == {("127.0.0.1", server.port)}


async def test_environment_proxies_are_ignored(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, guard: ConnectGuard
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.3:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.3:9")
    async with guarded_client(
        DEV, timeout=30, follow_redirects=False, resolver=DNS
    ) as client:
        response = await client.get(f"http://dev.test:{server.port}/ok")
    assert response.text == "hello"
    assert guard.destinations() == {("127.0.0.1", server.port)}


async def test_guarded_client_passes_headers_and_auth(server: LoopbackServer) -> None:
    async with guarded_client(
        DEV,
        timeout=30,
        follow_redirects=False,
        resolver=DNS,
        headers={"User-Agent": "tether-test"},
        auth=httpx2.BasicAuth("u", "p"),
    ) as client:
        await client.get(f"http://dev.test:{server.port}/ok")
    headers = server.requests[0].headers
    assert headers["user-agent"] == "tether-test"
    assert headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": 1, "connect_timeout": -1},
        {"timeout": 1, "max_redirects": -1},
        {"timeout": 1, "max_body": 0},
    ],
)
def test_guarded_client_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        guarded_client(NetworkPolicy(), follow_redirects=False, **kwargs)  # type: ignore[arg-type]


def test_make_ssl_context_verifies_by_default() -> None:
    context = make_ssl_context()
    assert context.check_hostname is True


@pytest.mark.parametrize("content", [None, "not a certificate"])
def test_make_ssl_context_refuses_a_bad_bundle(
    tmp_path: Path, content: str | None
) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_text(content)
    with pytest.raises(ConfigurationError, match="CA bundle"):
        make_ssl_context(str(bundle))


def _request() -> httpx2.Request:
    return httpx2.Request("GET", "https://mcp.example.com/")


@pytest.mark.parametrize(
    ("raised", "expected", "text"),
    [
        (httpx2.TooManyRedirects("x", request=_request()), BlockedDestination, "too"),
        (httpx2.ReadTimeout("x", request=_request()), RequestTimeout, "timed out"),
        (httpx2.PoolTimeout("x"), RequestTimeout, "timed out"),
        (httpx2.UnsupportedProtocol("x"), BlockedDestination, "refused the URL"),
        (httpx2.InvalidURL("bad"), BlockedDestination, "refused the URL"),
        (httpx2.ConnectError("x"), NetworkError, "ConnectError"),
        (httpx2.RemoteProtocolError("x"), NetworkError, "RemoteProtocolError"),
        (httpx2.DecodingError("x"), NetworkError, "DecodingError"),
        (
            httpx2.HTTPStatusError(
                "x", request=_request(), response=httpx2.Response(503)
            ),
            RemoteError,
            "HTTP 503 from mcp.example.com",
        ),
    ],
)
def test_mapped_errors_translates_httpx2(
    raised: Exception, expected: type[TetherError], text: str
) -> None:
    with (
        pytest.raises(expected, match=text) as caught,
        mapped_errors(server="s", step="token"),
    ):
        raise raised
    assert type(caught.value) is expected
    assert (caught.value.server, caught.value.step) == ("s", "token")
    assert caught.value.__cause__ is raised


def test_mapped_errors_fills_in_tether_errors_without_overwriting() -> None:
    bare = NetworkError("down")
    with pytest.raises(NetworkError) as caught, mapped_errors(server="s", step="x"):
        raise bare
    assert caught.value is bare
    assert str(bare) == "[x] s: down"
    named = NetworkError("down", server="other", step="y")
    with pytest.raises(NetworkError), mapped_errors(server="s", step="x"):
        raise named
    assert (named.server, named.step) == ("other", "y")


def test_mapped_errors_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), mapped_errors(server="s"):
        raise KeyError("k")

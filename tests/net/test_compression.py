"""Compressed responses are capped by their decoded size, while they stream (SSRF-8).

A gzip bomb (64 MiB of zeros in about 64 KB) must end in ``ResponseTooLarge`` on every
path — the guarded client, ``Fetcher.request`` (OAuth steps), and the MCP SDK's JSON and
SSE answers — without the decoded body ever being held in memory.
"""

from __future__ import annotations

import functools
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
import pytest

from tether.errors import NetworkError, ResponseTooLarge
from tether.mcp.session import MCPSession
from tether.net import NetworkPolicy, guarded_client
from tether.net.fetch import Fetcher, NetworkProfile
from tether.net.transport import PIECE, CappedStream, Inflater, content_coding

from .loopback import Exchange, FakeDNS, LoopbackServer

BOMB_SIZE = 64 * 1024 * 1024
CAP = 1024 * 1024
DNS = FakeDNS({"dev.test": ["127.0.0.1"]})
PROFILE = NetworkProfile(timeout=30.0)


@functools.cache
def bomb(prefix: bytes = b"", fill: bytes = b"\0") -> bytes:
    """``prefix`` and then 64 MiB of ``fill``, gzip-compressed in pieces."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    out = [packer.compress(prefix)]
    block = fill * (1024 * 1024 // len(fill))
    out += [packer.compress(block) for _ in range(BOMB_SIZE // len(block))]
    out.append(packer.flush())
    return b"".join(out)


def answer(
    body: bytes, *, encoding: str = "gzip", content_type: str = "application/json"
) -> Callable[[Exchange], Awaitable[None]]:
    async def handler(exchange: Exchange) -> None:
        headers = [("Content-Type", content_type)]
        if encoding:
            headers.append(("Content-Encoding", encoding))
        await exchange.send(200, headers, body)

    return handler


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


ROUTES = {
    "/bomb": answer(bomb()),
    "/json": answer(gzip.compress(b'{"ok": true}')),
    "/zlib": answer(zlib.compress(b"zlib body"), encoding="deflate"),
    "/raw": answer(raw_deflate(b"raw deflate body"), encoding="deflate"),
    "/identity": answer(b"plain", encoding="identity"),
    "/br": answer(b"\x0b\x02\x80hello\x03", encoding="br"),
    "/twice": answer(gzip.compress(gzip.compress(b"x")), encoding="gzip, gzip"),
    "/garbage": answer(b"this is not gzip at all"),
    "/truncated": answer(gzip.compress(b"y" * 1000)[:-12]),
    "/trailing": answer(gzip.compress(b"z") + b"more bytes"),
    "/empty": answer(b""),
    "/sse-bomb": answer(
        bomb(b"event: message\ndata: ", b"x"), content_type="text/event-stream"
    ),
}


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    async with LoopbackServer("127.0.0.1", ROUTES) as srv:
        yield srv


def client(**kwargs: Any) -> httpx2.AsyncClient:
    return guarded_client(
        NetworkPolicy.from_allowlist(["dev.test"]),
        timeout=30.0,
        follow_redirects=False,
        resolver=DNS,
        **kwargs,
    )


async def test_gzip_bomb_ends_at_the_decoded_cap_without_holding_the_body(
    server: LoopbackServer,
) -> None:
    assert len(bomb()) < 128 * 1024  # small on the wire …
    tracemalloc.start()
    try:
        async with client(max_body=CAP) as http:
            with pytest.raises(ResponseTooLarge) as caught:
                await http.get(f"http://dev.test:{server.port}/bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.code == "network.too_large"
    assert caught.value.details == {"limit": CAP}
    assert peak < 16 * 1024 * 1024  # … 64 MiB decoded: never held


async def test_fetcher_request_refuses_a_gzip_bomb(server: LoopbackServer) -> None:
    fetcher = Fetcher(NetworkPolicy.from_allowlist(["dev.test"]), resolver=DNS)
    fetcher_small = Fetcher(
        NetworkPolicy.from_allowlist(["dev.test"]), resolver=DNS, max_body=CAP
    )
    try:
        for each in (fetcher, fetcher_small):
            with pytest.raises(ResponseTooLarge) as caught:
                await each.request(
                    "GET",
                    f"http://dev.test:{server.port}/bomb",
                    profile=PROFILE,
                    server="bomber",
                    step="discovery",
                )
            assert caught.value.server == "bomber"
            assert caught.value.step == "discovery"
        ok = await fetcher.request(
            "GET",
            f"http://dev.test:{server.port}/json",
            profile=PROFILE,
            server="s",
            step="discovery",
        )
    finally:
        await fetcher.aclose()
        await fetcher_small.aclose()
    assert ok.body == b'{"ok": true}'
    assert ok.header("content-encoding") is None
    assert ok.header("content-length") is None


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/json", b'{"ok": true}'),
        ("/zlib", b"zlib body"),
        ("/raw", b"raw deflate body"),
        ("/identity", b"plain"),
        ("/empty", b""),
    ],
)
async def test_compressed_bodies_are_decoded_once(
    server: LoopbackServer, path: str, body: bytes
) -> None:
    async with client() as http:
        response = await http.get(f"http://dev.test:{server.port}{path}")
    assert response.content == body
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


async def test_accept_encoding_offers_only_what_is_inflated(
    server: LoopbackServer,
) -> None:
    async with client() as http:
        await http.get(
            f"http://dev.test:{server.port}/identity",
            headers={"Accept-Encoding": "br, zstd"},
        )
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/br", "content coding 'br'"),
        ("/twice", "content coding 'gzip, gzip'"),
        ("/garbage", "invalid gzip body"),
        ("/truncated", r"was cut off \(truncated\)"),
        ("/trailing", "data after the end of its gzip body"),
    ],
)
async def test_bad_compressed_bodies_are_network_errors(
    server: LoopbackServer, path: str, message: str
) -> None:
    async with client() as http:
        with pytest.raises(NetworkError, match=message):
            await http.get(f"http://dev.test:{server.port}{path}")


async def test_sse_gzip_bomb_is_capped_per_decoded_event(
    server: LoopbackServer,
) -> None:
    async with (
        client(max_body=CAP) as http,
        http.stream("GET", f"http://dev.test:{server.port}/sse-bomb") as response,
    ):
        assert response.headers.get("content-type") == "text/event-stream"
        sizes: list[int] = []

        async def read() -> None:
            async for piece in response.aiter_raw():
                sizes.append(len(piece))

        with pytest.raises(ResponseTooLarge, match=r"an event from dev\.test"):
            await read()
    assert max(sizes) <= PIECE
    assert sum(sizes) <= CAP


@pytest.mark.parametrize("path", ["/bomb", "/sse-bomb"])
async def test_mcp_answers_are_capped_by_decoded_size(
    server: LoopbackServer, path: str
) -> None:
    """The SDK's JSON answer and SSE event go through the same guarded transport."""
    tracemalloc.start()
    try:
        async with (
            client(max_body=CAP) as http,
            MCPSession(
                f"http://dev.test:{server.port}{path}",
                http,
                mode="legacy",
                server="bomber",
                timeout=30,
            ) as session,
        ):
            with pytest.raises(ResponseTooLarge) as caught:
                await session.list_tools()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.code == "network.too_large"
    assert caught.value.server == "bomber"
    assert peak < 32 * 1024 * 1024


def test_content_coding_table() -> None:
    def coding(*values: bytes) -> str | None:
        return content_coding("h", [(b"Content-Encoding", v) for v in values])

    assert content_coding("h", [(b"Content-Type", b"text/plain")]) is None
    assert coding(b"identity") is None
    assert coding(b"GZip") == "gzip"
    assert coding(b"x-gzip") == "gzip"
    assert coding(b"identity, deflate") == "deflate"
    with pytest.raises(NetworkError):
        coding(b"gzip", b"deflate")  # two header lines: two codings
    with pytest.raises(NetworkError):
        coding(b"compress")


async def test_inflater_hands_up_bounded_pieces() -> None:
    data = gzip.compress(b"a" * (5 * PIECE))

    async def body() -> AsyncIterator[bytes]:
        yield data

    stream = CappedStream(body(), host="h", limit=None, inflater=Inflater("gzip", "h"))
    pieces = [piece async for piece in stream]
    assert [len(p) for p in pieces] == [PIECE] * 5
    assert Inflater("gzip", "h").feed(b"") == b""

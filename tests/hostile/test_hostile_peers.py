"""Hostile peers on loopback: each misbehaviour ends in a clear TetherError, in time,
with the stored grant unchanged (issue 8 item 14; gzip bombs are tested in tests/net).

Small HTTP servers (``tests/net/loopback.py``) play the authorization server's token
endpoint and an MCP server. The hub's real fetcher and the real ``MCPSession`` talk to
them. Slow peers meet a short *configured* deadline (0.5 s); nothing here measures
time or sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from hub.fakes import seed_grant
from net.loopback import Exchange, LoopbackServer
from tether.errors import (
    AuthorizationRequired,
    InvalidResponse,
    RemoteError,
    RequestTimeout,
    ResponseTooLarge,
    TetherError,
    UsageError,
)
from tether.hub.audit import Auditor
from tether.hub.clock import SystemRandom
from tether.hub.connections import Connections
from tether.hub.context import HubConfig, HubContext
from tether.mcp.auth import AccessToken, BearerAuth
from tether.mcp.session import MCPSession
from tether.net.client import guarded_client, mapped_errors
from tether.net.fetch import Fetcher
from tether.net.policy import NetworkPolicy
from tether.oauth.challenge import BearerChallenge
from tether.store.base import (
    Connection,
    ServerRecord,
    Stores,
)
from tether.store.crypto import KeyRing
from tether.store.memory import open_memory_stores

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LOOPBACK = ("127.0.0.0/8",)
POLICY = NetworkPolicy.from_allowlist(LOOPBACK)
DEADLINE = 0.5  # the server's configured timeout, seconds
MiB = 1024 * 1024


class Clock:
    def now(self) -> datetime:
        return NOW


# --------------------------------------------------------------------- hostile routes


async def huge(exchange: Exchange) -> None:
    """100 MB announced and streamed in 1 MiB chunks, until the client hangs up."""
    head = "HTTP/1.1 200 X\r\nContent-Type: application/json\r\n"
    exchange.writer.write(f"{head}Content-Length: {100 * MiB}\r\n\r\n".encode())
    chunk = b" " * MiB
    for _ in range(100):
        exchange.writer.write(chunk)
        await exchange.writer.drain()


async def trickle(exchange: Exchange) -> None:
    """One byte per second of a JSON body, forever."""
    head = "HTTP/1.1 200 X\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    exchange.writer.write(head.encode())
    while True:
        exchange.writer.write(b" ")
        await exchange.writer.drain()
        await asyncio.sleep(1)  # the peer's behaviour, not synchronisation


async def loop(exchange: Exchange) -> None:
    """A redirect to itself, every time."""
    await exchange.send(302, [("Location", exchange.path)])


async def garbage_challenge(exchange: Exchange) -> None:
    """401 with a WWW-Authenticate no parser could love."""
    await exchange.send(
        401,
        [
            ("WWW-Authenticate", 'Bearer realm="\x01, error=,,,="""\\ scope="a'),
            ("Content-Type", "text/plain"),
        ],
        b"\x00\xff nope",
    )


def answering(body: bytes, status: int = 200) -> Callable[[Exchange], Awaitable[None]]:
    async def answer(exchange: Exchange) -> None:
        await exchange.send(status, [("Content-Type", "application/json")], body)

    return answer


ROUTES = {
    "/huge": huge,
    "/trickle": trickle,
    "/loop": loop,
    "/garbage": garbage_challenge,
    "/expires-string": answering(b'{"access_token": "at-2", "expires_in": "3600"}'),
    "/expires-negative": answering(b'{"access_token": "at-2", "expires_in": -1}'),
    "/expires-infinite": answering(b'{"access_token": "at-2", "expires_in": 1e309}'),
    "/mac": answering(b'{"access_token": "at-2", "token_type": "mac"}'),
    "/no-token": answering(b'{"token_type": "Bearer", "expires_in": 3600}'),
}


@pytest.fixture
async def peer() -> AsyncIterator[LoopbackServer]:
    async with LoopbackServer(routes=ROUTES) as server:
        yield server


# --------------------------------------------------------------------- the grant


async def grant(stores: Stores, token_endpoint: str) -> ServerRecord:
    issuer = token_endpoint.rsplit("/", 1)[0]
    return await seed_grant(
        stores,
        ServerRecord(
            id="s1",
            name="srv",
            url="http://127.0.0.1:9/mcp",
            auth_mode="oauth",
            timeout_seconds=DEADLINE,
            allow_networks=LOOPBACK,
        ),
        Connection(
            server_id="s1",
            subject="shared",
            status="connected",
            access_token=SecretStr("at-1"),
            refresh_token=SecretStr("rt-1"),
            expires_at=NOW - timedelta(minutes=1),
            issuer=issuer,
            client_id="c1",
        ),
        endpoints={"token_endpoint": token_endpoint},
        fetched_at=NOW,
    )


async def refresh_against(
    peer: LoopbackServer, path: str
) -> tuple[Connection | TetherError, Connection]:
    stores, _ = open_memory_stores(KeyRing.generate(), now=Clock().now)
    server = await grant(stores, f"http://{peer.origin}{path}")
    fetcher = Fetcher(POLICY)
    ctx = HubContext(
        stores=stores,
        clock=Clock(),
        random=SystemRandom(),
        fetcher=fetcher,
        auditor=Auditor(stores.audit, Clock()),
        config=HubConfig(redirect_uri="https://tether.example/cb"),
    )
    try:
        outcome: Connection | TetherError = await Connections(ctx).refresh(
            server, "shared", force=True
        )
    except TetherError as exc:
        outcome = exc
    finally:
        await fetcher.aclose()
    stored = await stores.connections.get("s1", "shared")
    assert stored is not None
    return outcome, stored


@pytest.mark.parametrize(
    ("path", "error", "why"),
    [
        ("/huge", ResponseTooLarge, ""),
        ("/trickle", RequestTimeout, ""),
        ("/loop", RemoteError, "HTTP 302"),
        ("/garbage", RemoteError, "HTTP 401"),
        ("/expires-negative", InvalidResponse, "negative expires_in"),
        ("/expires-infinite", InvalidResponse, "finite"),
        ("/mac", InvalidResponse, "token_type"),
        ("/no-token", InvalidResponse, "no access_token"),
    ],
)
async def test_hostile_token_endpoint_keeps_the_grant(
    peer: LoopbackServer, path: str, error: type[TetherError], why: str
) -> None:
    outcome, stored = await refresh_against(peer, path)
    assert isinstance(outcome, error), outcome
    assert why in str(outcome)
    assert stored.access_token == SecretStr("at-1")
    assert stored.refresh_token == SecretStr("rt-1")


async def test_expires_in_as_a_string_is_accepted(peer: LoopbackServer) -> None:
    outcome, stored = await refresh_against(peer, "/expires-string")
    assert isinstance(outcome, Connection)
    assert stored.access_token == SecretStr("at-2")
    assert stored.expires_at == NOW + timedelta(seconds=3600)


# --------------------------------------------------------------------- MCP server


@dataclass
class Refusing:
    """A token source that would refresh forever; the auth flow must stop first."""

    rejections: list[int] = field(default_factory=list)

    async def current(self) -> AccessToken:
        return AccessToken("at-1")

    async def rejected(
        self, token: AccessToken, challenge: BearerChallenge | None, *, status: int
    ) -> AccessToken:
        self.rejections.append(status)
        return AccessToken(f"at-{len(self.rejections) + 1}")


def mcp_routes(
    tools_body: bytes | None,
) -> dict[str, Callable[[Exchange], Awaitable[None]]]:
    async def mcp(exchange: Exchange) -> None:
        if tools_body is None:  # the 401 loop: every request, whatever token
            await garbage_challenge(exchange)
            return
        await exchange.send(200, [("Content-Type", "application/json")], tools_body)

    return {"/mcp": mcp}


async def test_ten_megabyte_tool_list_is_too_large() -> None:
    schema = {"type": "object", "description": "x" * (10 * MiB)}
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"tools": [{"name": "t", "inputSchema": schema}]},
        }
    ).encode()
    async with LoopbackServer(routes=mcp_routes(body)) as server:
        http = guarded_client(POLICY, timeout=5, follow_redirects=False)
        async with http:
            session = MCPSession(
                f"http://{server.origin}/mcp", http, mode="2026-07-28", timeout=5
            )
            with pytest.raises(ResponseTooLarge):
                async with session:
                    await session.list_tools()


async def test_401_loop_ends_in_authorization_required() -> None:
    source = Refusing()
    async with LoopbackServer(routes=mcp_routes(None)) as server:
        http = guarded_client(POLICY, timeout=5, follow_redirects=False)
        async with http:
            session = MCPSession(
                f"http://{server.origin}/mcp",
                http,
                auth=BearerAuth(source),
                mode="2026-07-28",
                timeout=5,
            )
            with pytest.raises(AuthorizationRequired):
                async with session:
                    await session.list_tools()
    assert source.rejections == [401]  # one refresh and one retry, then it stops


# --------------------------------------------------------------------- our own token


@pytest.mark.parametrize("token", ["sekrit\r\nX-Evil: 1", "sekrit\n", "sekrit\x00"])
async def test_a_header_with_a_line_break_is_refused_without_echoing_it(
    peer: LoopbackServer, token: str
) -> None:
    http = guarded_client(POLICY, timeout=5, follow_redirects=False)
    async with http:
        with (
            mapped_errors(server="srv", step="mcp"),
            pytest.raises(UsageError) as caught,
        ):
            await http.get(
                f"http://{peer.origin}/ok", headers={"Authorization": f"Bearer {token}"}
            )
    shown = str(caught.value) + json.dumps(caught.value.to_dict())
    assert "sekrit" not in shown
    assert "value not shown" in shown
    assert not peer.requests  # nothing left the client

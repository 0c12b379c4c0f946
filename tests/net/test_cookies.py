"""Guarded clients keep no cookies: nothing one subject receives reaches another.

One guarded client serves every user of a server (``Fetcher`` pools one per network
profile, and the MCP sessions of all users share it), so a cookie set in Alice's answer
must never ride on Bob's request (issue 8 item 2).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tether.mcp.auth import HeaderAuth
from tether.mcp.session import MCPSession
from tether.net import NetworkPolicy, guarded_client
from tether.net.browser import follow_authorization
from tether.net.client import no_cookies
from tether.net.fetch import Fetcher, NetworkProfile

from .loopback import Exchange, FakeDNS, LoopbackServer

DNS = FakeDNS({"mcp.test": ["127.0.0.1"]})
POLICY = NetworkPolicy.from_allowlist(["mcp.test"])


async def sets_a_session_cookie(exchange: Exchange) -> None:
    """Answer with a cookie naming whoever asked (by bearer token)."""
    who = exchange.headers.get("authorization", "nobody").rsplit(" ", 1)[-1]
    await exchange.send(
        200,
        [
            ("Content-Type", "application/json"),
            ("Set-Cookie", f"sid=session-of-{who}; Path=/"),
            ("Set-Cookie", "tracking=1; Domain=mcp.test; Path=/; Max-Age=3600"),
        ],
        b"{}",
    )


async def authorize(exchange: Exchange) -> None:
    """An AS that needs a cookie between its two steps (as oidc-provider does)."""
    if "cookie" not in exchange.headers:
        await exchange.send(
            302, [("Location", "/authorize?again=1"), ("Set-Cookie", "interaction=x")]
        )
    else:
        await exchange.send(302, [("Location", "http://mcp.test/callback?code=c")])


async def tiny_mcp(exchange: Exchange) -> None:
    """Just enough MCP (2025-11-25, JSON answers) to list no tools, setting a cookie."""
    message = json.loads(exchange.body)
    if "id" not in message:  # a notification
        await exchange.send(202)
        return
    result: dict[str, object] = {"tools": []}
    if message["method"] == "initialize":
        result = {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "tiny", "version": "1"},
        }
    who = exchange.headers.get("authorization", "nobody").rsplit(" ", 1)[-1]
    answer = {"jsonrpc": "2.0", "id": message["id"], "result": result}
    await exchange.send(
        200,
        [
            ("Content-Type", "application/json"),
            ("Set-Cookie", f"sid=session-of-{who}; Path=/"),
        ],
        json.dumps(answer).encode(),
    )


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    routes = {
        "/mcp": sets_a_session_cookie,
        "/authorize": authorize,
        "/tiny-mcp": tiny_mcp,
    }
    async with LoopbackServer("127.0.0.1", routes, keep_alive=True) as srv:
        yield srv


async def test_two_users_on_one_server_share_no_cookie(server: LoopbackServer) -> None:
    """Alice's answer sets ``sid``; Bob's request through the same client has none."""
    fetcher = Fetcher(POLICY, resolver=DNS)
    profile = NetworkProfile(timeout=30.0)
    url = f"http://mcp.test:{server.port}/mcp"
    try:
        for user in ("alice", "bob"):  # the OAuth steps (discovery, token, …)
            await fetcher.request(
                "POST",
                url,
                profile=profile,
                server="shared",
                step="token",
                headers={"Authorization": f"Bearer {user}"},
            )
        shared = fetcher.client(profile)  # what every user's MCP session goes through
        for user in ("alice", "bob"):
            await shared.post(url, headers={"Authorization": f"Bearer {user}"})
        assert len(shared.cookies) == 0
    finally:
        await fetcher.aclose()
    assert len(server.requests) == 4
    assert server.requests[0].headers["authorization"] == "Bearer alice"
    assert server.requests[3].headers["authorization"] == "Bearer bob"
    assert [r.headers.get("cookie") for r in server.requests] == [None] * 4


async def test_two_users_mcp_sessions_on_one_client_share_no_cookie(
    server: LoopbackServer,
) -> None:
    """Each user's MCP session goes through the server's one shared guarded client."""
    url = f"http://mcp.test:{server.port}/tiny-mcp"
    async with guarded_client(
        POLICY, timeout=30.0, follow_redirects=False, resolver=DNS
    ) as shared:
        for user in ("alice", "bob"):
            async with MCPSession(
                url, shared, auth=HeaderAuth(user), mode="legacy", timeout=30
            ) as session:
                assert await session.list_tools() == []
    by_user = [
        (r.headers["authorization"], r.headers.get("cookie")) for r in server.requests
    ]
    assert {who for who, _ in by_user} == {"alice", "bob"}  # HeaderAuth, no scheme
    assert len(by_user) >= 6  # initialize, initialized, tools/list for each
    assert all(cookie is None for _, cookie in by_user)


async def test_a_cookie_given_to_the_client_is_not_kept(server: LoopbackServer) -> None:
    async with guarded_client(
        POLICY, timeout=30.0, follow_redirects=False, resolver=DNS
    ) as http:
        http.cookies.extract_cookies(
            await http.get(f"http://mcp.test:{server.port}/mcp")
        )
        await http.get(f"http://mcp.test:{server.port}/mcp")
        assert len(http.cookies) == 0
    assert all("cookie" not in r.headers for r in server.requests)


async def test_an_authorization_walk_keeps_its_cookies_to_itself(
    server: LoopbackServer,
) -> None:
    """The headless walk has a jar for one walk; the next walk starts without one."""
    start = f"http://mcp.test:{server.port}/authorize"
    for _ in range(2):
        params = await follow_authorization(
            start, "http://mcp.test/callback", POLICY, resolver=DNS
        )
        assert params == {"code": "c"}
    cookies = [r.headers.get("cookie") for r in server.requests]
    assert cookies == [None, "interaction=x", None, "interaction=x"]


def test_the_jar_policy_refuses_everything() -> None:
    jar = no_cookies()
    policy = jar._policy  # type: ignore[attr-defined]
    assert not policy.set_ok(None, None)
    assert not policy.return_ok(None, None)
    assert not policy.domain_return_ok("mcp.test", None)
    assert not policy.path_return_ok("/", None)

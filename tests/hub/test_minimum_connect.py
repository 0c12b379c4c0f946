"""The minimum connect, as the exact request list against the real peers (issue 9).

A cold connect of a per-user server asks the MCP server once without a token (the 401
and its challenge), reads the PRM and the AS metadata, registers, and after the
callback redeems the code. A second user of the same server reuses that discovery and
registration: only the token request remains (the authorization itself happens in the
user's browser). The list is a behaviour of the protocol, not a timing.

The first call then sends no ``server/discover`` (optional for a 2026-07-28 client; the
call itself tells the era) and opens no ``subscriptions/listen`` stream (nothing holds a
tool list yet). It lists the tools first only when no definition of the tool is at
hand: a 2026-07-28 client MUST mirror ``x-mcp-header`` arguments, which only the
definition names (HTTP7-4); a cached list spares that.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from hub.conftest import (
    LOOPBACK,
    FakeClock,
    MakeTether,
    as_requests,
    authorize,
    oauth_server,
)
from peers.fixture import AuthServer, MCPServer
from peers.plugin import PeerFactory
from tether.hub import discovery
from tether.hub.discovery import DISCOVERY_TTL, cache_lifetime
from tether.hub.tether import Tether
from tether.net.transport import GuardedTransport

pytestmark = pytest.mark.realservers


class Recorder:
    """Every request Tether's fetcher sends: (method, path, step)."""

    def __init__(self, tether: Tether, monkeypatch: pytest.MonkeyPatch) -> None:
        self.requests: list[tuple[str, str, str]] = []
        original = tether.fetcher.request

        async def request(method: str, url: str, **kwargs: Any) -> Any:
            self.requests.append((method, urlsplit(url).path, kwargs.get("step", "")))
            return await original(method, url, **kwargs)

        monkeypatch.setattr(tether.fetcher, "request", request)

    def take(self) -> list[tuple[str, str, str]]:
        taken, self.requests = self.requests, []
        return taken


class MCPRecorder:
    """Every request that reaches the MCP server's port: (method, path, JSON-RPC)."""

    def __init__(self, mcp: MCPServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        port = urlsplit(mcp.url).port
        original = GuardedTransport.handle_async_request

        async def handle(transport: GuardedTransport, request: Any) -> Any:
            if request.url.port == port:
                self.requests.append(
                    (request.method, request.url.path, _rpc_method(request.content))
                )
            return await original(transport, request)

        monkeypatch.setattr(GuardedTransport, "handle_async_request", handle)

    def take(self) -> list[tuple[str, str, str | None]]:
        taken, self.requests = self.requests, []
        return taken


def _rpc_method(content: bytes) -> str | None:
    try:
        method = json.loads(content).get("method") if content else None
    except ValueError:
        return None
    return method if isinstance(method, str) else None


async def call_echo(tether: Tether, user: str) -> None:
    result = await tether.call_tool("personal", "echo", {"text": "x"}, user=user)
    assert not result.is_error, result.text


async def connect_as(tether: Tether, server: str, user: str) -> None:
    params = await authorize(tether, server, user=user)
    info = await tether.complete(params, user=user)
    assert info.status == "connected", info


async def test_cold_connect_then_a_second_user_needs_only_the_token(
    make_tether: MakeTether,
    tmp_peers: PeerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = tmp_peers.auth_server(AS_LOG=1)
    mcp = tmp_peers.mcp_server(auth)
    tether = await make_tether()
    await tether.servers.create(
        oauth_server(mcp, name="personal", per_user=True), actor="admin"
    )
    mcp_path = urlsplit(mcp.url).path
    recorder = Recorder(tether, monkeypatch)
    wire = MCPRecorder(mcp, monkeypatch)

    await connect_as(tether, "personal", "ann")
    assert recorder.take() == [
        ("POST", mcp_path, "challenge"),  # initialize without a token: 401
        ("GET", "/.well-known/oauth-protected-resource" + mcp_path, "discovery"),
        ("GET", "/.well-known/oauth-authorization-server", "discovery"),
        ("POST", "/reg", "registration"),
        ("POST", "/token", "token"),
    ]
    metadata_reads = len(
        as_requests(auth, "GET", "/.well-known/oauth-authorization-server")
    )
    await call_echo(tether, "ann")
    assert wire.take() == [
        ("POST", mcp_path, "initialize"),  # without a token: the 401
        ("GET", "/.well-known/oauth-protected-resource" + mcp_path, None),
        ("POST", mcp_path, "tools/list"),  # echo's definition (HTTP7-4)
        ("POST", mcp_path, "tools/call"),  # at 2026-07-28: no server/discover
    ]
    assert recorder.take() == []  # the token is the one just stored

    await connect_as(tether, "personal", "bob")
    assert recorder.take() == [("POST", "/token", "token")]
    await call_echo(tether, "bob")
    assert wire.take() == [
        ("POST", mcp_path, "tools/list"),  # bob's tools are his own to list
        ("POST", mcp_path, "tools/call"),
    ]
    # the AS saw no second metadata read either
    assert (
        len(as_requests(auth, "GET", "/.well-known/oauth-authorization-server"))
        == metadata_reads
    )

    # a changed server discovers afresh
    await tether.servers.update("personal", {"description": "changed"}, actor="admin")
    await connect_as(tether, "personal", "cai")
    assert [r[2] for r in recorder.take()][:3] == [
        "challenge",
        "discovery",
        "discovery",
    ]


async def test_discovery_is_reused_only_within_its_lifetime(
    make_tether: MakeTether,
    auth_server: AuthServer,
    mcp_server: MCPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    await tether.servers.create(
        oauth_server(mcp_server, name="personal", per_user=True), actor="admin"
    )
    recorder = Recorder(tether, monkeypatch)
    await connect_as(tether, "personal", "ann")
    recorder.take()
    clock.advance(DISCOVERY_TTL)
    await connect_as(tether, "personal", "bob")
    steps = [step for _, _, step in recorder.take()]
    assert steps == ["challenge", "discovery", "discovery", "token"]  # registered


def seconds(cache_control: list[str]) -> float | None:
    lifetime = cache_lifetime(cache_control)
    return None if lifetime is None else lifetime.total_seconds()


def test_cache_control_sets_the_lifetime() -> None:
    """RFC 9111 §5.2.2: max-age bounds the reuse; no-store/no-cache forbid it."""
    assert seconds([]) is None
    assert seconds(["public"]) is None
    assert seconds(["public, max-age=60"]) == 60
    assert seconds(['max-age="5"']) == 5
    assert seconds(["no-store"]) == 0
    assert seconds(["private", "no-cache"]) == 0
    assert seconds(["max-age=abc"]) == 0
    assert DISCOVERY_TTL.total_seconds() == 600


async def test_no_store_metadata_is_not_reused(
    make_tether: MakeTether,
    auth_server: AuthServer,
    mcp_server: MCPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Metadata answered with ``Cache-Control: no-store`` is discovered at every connect.

    The peers send no ``Cache-Control``; the header's parsing is tested above, so here
    the parsed value is what the AS would have said.
    """
    monkeypatch.setattr(discovery, "cache_lifetime", lambda _values: timedelta(0))
    tether = await make_tether()
    await tether.servers.create(
        oauth_server(mcp_server, name="personal", per_user=True), actor="admin"
    )
    recorder = Recorder(tether, monkeypatch)
    await connect_as(tether, "personal", "ann")
    recorder.take()
    await connect_as(tether, "personal", "bob")
    steps = [step for _, _, step in recorder.take()]
    assert steps == ["challenge", "discovery", "discovery", "token"]


async def test_a_call_with_a_cached_tool_list_sends_only_the_call(
    make_tether: MakeTether,
    tmp_peers: PeerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh process with the tool list in the store: the call alone goes out.

    No ``server/discover`` (the era is learned from the call), no ``tools/list`` (the
    cached definition names the ``x-mcp-header`` arguments) and no listen stream (the
    process holds no tool list that could go stale).
    """
    mcp = tmp_peers.mcp_server()
    first = await make_tether()
    await first.servers.create(
        {"name": "personal", "url": mcp.url, "allow_networks": LOOPBACK},
        actor="admin",
    )
    assert "echo" in {tool["name"] for tool in await first.list_tools("personal")}
    await first.aclose()

    tether = await make_tether()  # same database, nothing in memory
    wire = MCPRecorder(mcp, monkeypatch)
    await call_echo(tether, "ann")
    await call_echo(tether, "ann")  # a listen opened at connect would be seen by now
    path = urlsplit(mcp.url).path
    assert wire.take() == [("POST", path, "tools/call"), ("POST", path, "tools/call")]
    assert await anyio.to_thread.run_sync(mcp.listeners) == 0


async def test_a_list_served_from_the_cache_is_watched_once_a_call_connects(
    make_tether: MakeTether,
    tmp_peers: PeerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """R6.4.4: serving a cached list sends nothing and opens no session; the session a
    later call opens subscribes to tool-list changes, since this process holds a list.
    """
    mcp = tmp_peers.mcp_server()
    first = await make_tether()
    await first.servers.create(
        {"name": "personal", "url": mcp.url, "allow_networks": LOOPBACK},
        actor="admin",
    )
    await first.list_tools("personal")
    await first.aclose()

    tether = await make_tether()
    wire = MCPRecorder(mcp, monkeypatch)
    assert "echo" in {tool["name"] for tool in await tether.list_tools("personal")}
    assert wire.take() == []
    assert await anyio.to_thread.run_sync(mcp.listeners) == 0
    await call_echo(tether, "ann")
    for _ in range(1500):  # polls a real condition; 30 s hang guard
        if await anyio.to_thread.run_sync(mcp.listeners):
            break
        await anyio.sleep(0.02)
    assert await anyio.to_thread.run_sync(mcp.listeners) == 1
    path = urlsplit(mcp.url).path
    assert ("POST", path, "tools/call") in wire.take()


async def test_a_views_subscriptions_open_after_every_list_is_in(
    make_tether: MakeTether,
    tmp_peers: PeerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """R6.4.4: a toolset's first view lists its servers first, then subscribes.

    The subscriptions are opened once the view is built, so they never compete with
    the listing; each server still gets its one ``subscriptions/listen`` stream.
    """
    mcp = tmp_peers.mcp_server()
    tether = await make_tether()
    for name in ("one", "two", "three"):
        await tether.servers.create(
            {"name": name, "url": mcp.url, "allow_networks": LOOPBACK}, actor="admin"
        )
    await tether.toolsets.create(
        "wide", [{"server": n} for n in ("one", "two", "three")], actor="admin"
    )
    events: list[str] = []  # "sent <method>" and "answered <method>", in order
    original = GuardedTransport.handle_async_request

    async def handle(transport: GuardedTransport, request: Any) -> Any:
        method = _rpc_method(request.content) or request.method
        events.append(f"sent {method}")
        response = await original(transport, request)
        events.append(f"answered {method}")
        return response

    monkeypatch.setattr(GuardedTransport, "handle_async_request", handle)
    await tether.toolset("wide")
    for _ in range(1500):  # polls a real condition; 30 s hang guard
        if await anyio.to_thread.run_sync(mcp.listeners) == 3:
            break
        await anyio.sleep(0.02)
    assert await anyio.to_thread.run_sync(mcp.listeners) == 3
    assert events.count("answered tools/list") == 3
    last_answer = max(i for i, e in enumerate(events) if e == "answered tools/list")
    assert last_answer < events.index("sent subscriptions/listen"), events


async def test_a_view_holds_subscriptions_not_connections(
    make_tether: MakeTether,
    tmp_peers: PeerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """R6.4.7: a view's stateless connections are closed once its lists are in.

    Each server keeps its ``subscriptions/listen`` stream, which rides on no
    connection; a call then makes one at the remembered era and sends only the call
    (the definition is cached, so no list either).
    """
    mcp = tmp_peers.mcp_server()
    tether = await make_tether()
    names = ("one", "two", "three")
    for name in names:
        await tether.servers.create(
            {"name": name, "url": mcp.url, "allow_networks": LOOPBACK}, actor="admin"
        )
    await tether.toolsets.create("wide", [{"server": n} for n in names], actor="admin")
    view = await tether.toolset("wide")
    for _ in range(1500):  # polls a real condition; 30 s hang guard
        if await anyio.to_thread.run_sync(mcp.listeners) == 3:
            break
        await anyio.sleep(0.02)
    assert await anyio.to_thread.run_sync(mcp.listeners) == 3
    assert tether.tools.open_sessions == 3
    assert tether.tools.open_connections == 0

    one = (await tether.servers.get("one")).id
    exposed = next(
        name
        for name, key in view.names.by_exposed.items()
        if key.server_id == one and key.tool_name == "echo"
    )
    wire = MCPRecorder(mcp, monkeypatch)
    result = await tether.call("wide", exposed, {"text": "x"})
    assert not result.is_error
    assert [m for _, _, m in wire.take()] == ["tools/call"]
    assert tether.tools.open_connections == 1
    assert await anyio.to_thread.run_sync(mcp.listeners) == 3


async def test_idle_sessions_are_evicted_but_subscribed_ones_stay(
    make_tether: MakeTether,
    tmp_peers: PeerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """R6.4.6: a session only called, then unused for the idle period, is closed; one
    that keeps a tool-list subscription stays. The evicted server's next call needs no
    probe: the era is remembered."""
    mcp = tmp_peers.mcp_server()
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    for name in ("listed", "personal"):
        await tether.servers.create(
            {"name": name, "url": mcp.url, "allow_networks": LOOPBACK}, actor="admin"
        )
    await tether.list_tools("listed")
    for _ in range(1500):  # polls a real condition; 30 s hang guard
        if await anyio.to_thread.run_sync(mcp.listeners):
            break
        await anyio.sleep(0.02)
    await call_echo(tether, "ann")  # "personal": called, never listed by the hub
    assert tether.tools.open_sessions == 2

    clock.advance(timedelta(minutes=11))
    result = await tether.call_tool("listed", "echo", {"text": "x"})  # sweeps
    assert not result.is_error
    assert tether.tools.open_sessions == 1  # "personal" was closed
    assert await anyio.to_thread.run_sync(mcp.listeners) == 1

    wire = MCPRecorder(mcp, monkeypatch)
    await call_echo(tether, "ann")  # a new session, at the remembered era
    assert [m for _, _, m in wire.take()] == ["tools/list", "tools/call"]
    assert tether.tools.open_sessions == 2

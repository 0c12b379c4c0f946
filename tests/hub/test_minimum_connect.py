"""The minimum connect, as the exact request list against the real peers (issue 9).

A cold connect of a per-user server asks the MCP server once without a token (the 401
and its challenge), reads the PRM and the AS metadata, registers, and after the
callback redeems the code. A second user of the same server reuses that discovery and
registration: only the token request remains (the authorization itself happens in the
user's browser). The list is a behaviour of the protocol, not a timing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from hub.conftest import FakeClock, MakeTether, as_requests, authorize, oauth_server
from peers.fixture import AuthServer, MCPServer
from peers.plugin import PeerFactory
from tether.hub import discovery
from tether.hub.discovery import DISCOVERY_TTL, cache_lifetime
from tether.hub.tether import Tether

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

    await connect_as(tether, "personal", "bob")
    assert recorder.take() == [("POST", "/token", "token")]
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

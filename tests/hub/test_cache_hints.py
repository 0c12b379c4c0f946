"""HTTP7-9: a ``tools/list`` ``ttlMs`` brings a held list's revalidation forward (R2.5).

Against the SDK's MCP server, whose ``cache_hints`` stamp ``ttlMs``/``cacheScope`` on
its 2026-07-28 ``tools/list`` results. The clock is a fake one moved by the test; the
background revalidation is awaited by polling what the server received (no sleep
decides anything).
"""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from hub.conftest import LOOPBACK, FakeClock, MakeTether
from hub.test_minimum_connect import MCPRecorder
from peers.fixture import MCPServer
from peers.plugin import PeerFactory
from tether.hub.tether import Tether
from tether.hub.tools import HARD_EXPIRY, SOFT_EXPIRY, TTL_FLOOR, soft_expiry
from tether.mcp.session import combine_hints
from tether.store.base import SHARED

pytestmark = pytest.mark.realservers


@pytest.mark.parametrize(
    ("ttl_ms", "expected"),
    [
        (None, SOFT_EXPIRY),  # no hint (a handshake revision): the cache's own
        (0, TTL_FLOOR),  # immediately stale: at most once a minute
        (30_000, TTL_FLOOR),
        (300_000, timedelta(minutes=5)),
        (10 * 3600 * 1000, SOFT_EXPIRY),  # a long hint never delays the cache's own
    ],
)
def test_soft_expiry(ttl_ms: int | None, expected: timedelta) -> None:
    assert soft_expiry(ttl_ms) == expected
    assert TTL_FLOOR <= soft_expiry(ttl_ms) <= SOFT_EXPIRY < HARD_EXPIRY


@pytest.mark.parametrize(
    ("pages", "expected"),
    [
        ([], (0, "private")),
        ([(60_000, "public")], (60_000, "public")),
        ([(60_000, "public"), (1_000, "public")], (1_000, "public")),
        ([(60_000, "public"), (90_000, "private")], (60_000, "private")),
    ],
)
def test_a_paginated_list_is_as_fresh_as_its_stalest_page(
    pages: list[tuple[int, str]], expected: tuple[int, str]
) -> None:
    assert combine_hints(pages) == expected


async def _server(tether: Tether, mcp: MCPServer) -> str:
    record = await tether.servers.create(
        {"name": "hinted", "url": mcp.url, "allow_networks": LOOPBACK}, actor="admin"
    )
    return record.id


async def _until_listed(wire: MCPRecorder) -> list[str | None]:
    for _ in range(1500):  # polls a real condition; 30 s hang guard
        if any(m == "tools/list" for _, _, m in wire.requests):
            break
        await anyio.sleep(0.02)
    return [m for _, _, m in wire.take()]


@pytest.mark.parametrize(
    ("ttl_env", "quiet", "due"),
    [
        (None, timedelta(seconds=30), timedelta(seconds=61)),  # the SDK's default 0
        ("300000", timedelta(minutes=4), timedelta(minutes=6)),
        ("36000000", timedelta(minutes=59), timedelta(minutes=61)),
    ],
    ids=["ttl-0", "ttl-5-min", "ttl-10-h"],
)
async def test_a_worker_without_a_subscription_revalidates_on_the_ttl(
    make_tether: MakeTether,
    tmp_peers: PeerFactory,
    monkeypatch: pytest.MonkeyPatch,
    ttl_env: str | None,
    quiet: timedelta,
    due: timedelta,
) -> None:
    """A second worker holds the list through the store only: the hint decides."""
    mcp = (
        tmp_peers.mcp_server()
        if ttl_env is None
        else tmp_peers.mcp_server(MCP_TOOLS_TTL_MS=ttl_env)
    )
    clock = FakeClock()
    first = await make_tether(clock=clock)
    server_id = await _server(first, mcp)
    held = await first.list_tools("hinted")
    entry = await first.stores.tools.get(server_id, SHARED)
    assert entry is not None
    assert entry.ttl_ms == (0 if ttl_env is None else int(ttl_env))

    second = await make_tether(clock=clock)  # another worker: no session of its own
    changes: list[str] = []
    second.tools.on_tools_changed(changes.append)
    wire = MCPRecorder(mcp, monkeypatch)
    clock.advance(quiet)
    assert await second.list_tools("hinted") == held
    assert wire.take() == []  # still fresh

    clock.advance(due - quiet)
    assert await second.list_tools("hinted") == held  # served while revalidating
    assert "tools/list" in await _until_listed(wire)
    for _ in range(1500):  # the new fetch time is written after the answer
        entry = await second.stores.tools.get(server_id, SHARED)
        if entry is not None and entry.fetched_at == clock.now():
            break
        await anyio.sleep(0.02)
    assert entry is not None
    assert entry.fetched_at == clock.now()
    assert changes == []  # the same list: nothing to drop


async def test_a_live_subscription_makes_the_ttl_moot(
    make_tether: MakeTether,
    tmp_peers: PeerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While an acknowledged subscription is open, changes arrive as they happen."""
    mcp = tmp_peers.mcp_server()  # ttlMs 0
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    await _server(tether, mcp)
    await tether.list_tools("hinted")
    server = await tether.servers.get("hinted")
    session = await tether.tools.session(server, SHARED)
    for _ in range(1500):  # polls a real condition; 30 s hang guard
        if session.hears_changes:
            break
        await anyio.sleep(0.02)
    assert session.hears_changes
    wire = MCPRecorder(mcp, monkeypatch)
    clock.advance(timedelta(minutes=30))
    await tether.list_tools("hinted")
    assert wire.take() == []
    clock.advance(timedelta(minutes=31))  # past the cache's own soft expiry
    await tether.list_tools("hinted")
    assert "tools/list" in await _until_listed(wire)


async def test_a_handshake_revision_list_has_no_hint(
    make_tether: MakeTether, tmp_peers: PeerFactory
) -> None:
    """Results before 2026-07-28 carry no hints, whatever the SDK's model defaults."""
    mcp = tmp_peers.mcp_server(
        MCP_PROTOCOL_VERSIONS="2025-11-25", MCP_TOOLS_TTL_MS="300000"
    )
    tether = await make_tether()
    server_id = await _server(tether, mcp)
    await tether.list_tools("hinted")
    entry = await tether.stores.tools.get(server_id, SHARED)
    assert entry is not None
    assert entry.protocol_version == "2025-11-25"
    assert entry.ttl_ms is None


async def test_a_reopened_subscription_revalidates_without_dropping_views(
    make_tether: MakeTether,
    tmp_peers: PeerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """R6.4.7: after a break the held list is asked again, and kept if unchanged.

    Silence re-opens a listen stream (no keep-alive exists on it); the list that
    comes back is the same, so no view is dropped and the cache stays.
    """
    from tether.mcp import session as session_module

    monkeypatch.setattr(session_module, "LISTEN_READ_TIMEOUT", 0.5)
    monkeypatch.setattr(session_module, "SUBSCRIBE_BACKOFF", (0.05, 0.2))
    mcp = tmp_peers.mcp_server()
    tether = await make_tether()
    server_id = await _server(tether, mcp)
    changes: list[str] = []
    tether.tools.on_tools_changed(changes.append)
    held = await tether.list_tools("hinted")
    first = await tether.stores.tools.get(server_id, SHARED)
    assert first is not None
    fetches = {first.fetched_at}
    # Two revalidations written: the second could start only once the first had
    # finished, its comparison included (one background refresh per list at a time).
    for _ in range(1500):  # polls a real condition; 30 s hang guard
        entry = await tether.stores.tools.get(server_id, SHARED)
        assert entry is not None  # never dropped
        fetches.add(entry.fetched_at)
        if len(fetches) >= 3:
            break
        await anyio.sleep(0.02)
    assert len(fetches) >= 3
    assert entry is not None
    assert list(entry.tools) == held
    assert changes == []

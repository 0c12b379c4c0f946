"""More sessions than the request pool has connections, on one origin (issue 9).

Every 2026-07-28 session that holds a tool list keeps a ``subscriptions/listen`` stream
open. Those streams used to take the guarded client's pooled connections, 100 per
scheme, so the 101st session's requests waited forever for a connection no stream would
give back. Streams now have a pool of their own (``net/transport.py``), so any number of
sessions keep their streams and every call still gets a connection. The bound below is
a hang guard, not a timing.
"""

from __future__ import annotations

import anyio
import pytest

from hub.conftest import LOOPBACK, MakeTether
from peers.plugin import PeerFactory
from tether.store.base import SHARED

pytestmark = pytest.mark.realservers

SESSIONS = 150
HANG_GUARD = 300.0


async def test_150_sessions_with_listen_streams_all_complete_their_calls(
    make_tether: MakeTether, tmp_peers: PeerFactory
) -> None:
    mcp = tmp_peers.mcp_server()
    tether = await make_tether()
    names = [f"s{i:03}" for i in range(SESSIONS)]
    for name in names:
        await tether.servers.create(
            {"name": name, "url": mcp.url, "allow_networks": LOOPBACK}, actor="admin"
        )
    await tether.toolsets.create(
        "wide", [{"server": name, "tools": ["echo"]} for name in names], actor="admin"
    )
    results: dict[str, str] = {}
    with anyio.fail_after(HANG_GUARD):
        view = await tether.toolset("wide")  # every session lists: every one watches
        assert len(view.tools) == SESSIONS
        for _ in range(6000):  # the streams open in the background; wait for them
            if await anyio.to_thread.run_sync(mcp.listeners) >= SESSIONS:
                break
            await anyio.sleep(0.05)

        async def call(name: str) -> None:
            server = await tether.servers.get(name)
            result = await tether.tools.call(server, SHARED, "echo", {"text": name})
            results[name] = result.text

        async with anyio.create_task_group() as group:
            for name in names:
                group.start_soon(call, name)
    assert results == {name: name for name in names}
    assert await anyio.to_thread.run_sync(mcp.listeners) == SESSIONS

"""Toolset views are built once and dropped by events (issue 9).

A call through a toolset routes by a dictionary lookup: after the first call, no store
is read. Each event that can change a view drops it: a toolset edit, a server change, a
connection change, a tool-list change; another worker's edit shows up after
``VIEW_TTL``. Store reads are counted with a wrapper, never timed. The first view lists
its servers concurrently, bounded, and a hung server is left out by its own deadline.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from hub.conftest import LOOPBACK, FakeClock, MakeTether, connect, oauth_server
from peers.fixture import AuthServer, MCPServer
from peers.plugin import PeerFactory
from tether.errors import RequestTimeout, TetherError
from tether.hub.tether import Tether
from tether.hub.toolsets import VIEW_TTL
from tether.store.base import ServerRecord

pytestmark = pytest.mark.realservers

READS = ("get", "get_many", "get_by_name", "list", "get_health")


class Reads:
    """Counts every read of the servers, toolsets, tools and connections stores."""

    def __init__(self, tether: Tether, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for store_name in ("servers", "toolsets", "tools", "connections"):
            store = getattr(tether.stores, store_name)
            for method in READS:
                if hasattr(store, method):
                    monkeypatch.setattr(
                        store, method, self._counted(store_name, method, store)
                    )

    def _counted(self, store_name: str, method: str, store: Any) -> Any:
        original = getattr(store, method)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(f"{store_name}.{method}")
            return await original(*args, **kwargs)

        return counted

    def take(self) -> list[str]:
        """The reads since the last take."""
        calls, self.calls = self.calls, []
        return calls


async def add_open(tether: Tether, name: str, url: str, **extra: Any) -> ServerRecord:
    return await tether.servers.create(
        {"name": name, "url": url, "allow_networks": LOOPBACK, **extra},
        actor="admin",
    )


async def echo(tether: Tether, toolset: str = "agent", **kw: Any) -> str:
    result = await tether.call(toolset, "echo", {"text": "hi"}, **kw)
    assert not result.is_error, result.text
    return result.text


async def test_calls_after_the_first_read_no_store(
    make_tether: MakeTether,
    open_mcp_server: MCPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tether = await make_tether()
    await add_open(tether, "open", open_mcp_server.url)
    await tether.toolsets.create("agent", [{"server": "open"}], actor="admin")
    reads = Reads(tether, monkeypatch)
    assert await echo(tether) == "hi"
    assert "toolsets.get" in reads.take()  # the first call builds the view
    for _ in range(20):
        assert await echo(tether) == "hi"
    view = await tether.toolset("agent")
    assert reads.take() == []
    assert "echo" in view.names.by_exposed
    # reserved names are a different view, built once too
    await tether.call("agent", "echo", {"text": "x"}, reserved=["echo"])
    assert reads.take() != []
    await tether.call("agent", "open__echo", {"text": "x"}, reserved=["echo"])
    # building a view closed the server's stateless connection (R6.4.7): the new
    # connection takes the tool's definition from the cache, once
    assert reads.take() == ["tools.get"]
    await tether.call("agent", "open__echo", {"text": "x"}, reserved=["echo"])
    assert reads.take() == []


async def test_a_toolset_edit_drops_its_view(
    make_tether: MakeTether,
    open_mcp_server: MCPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tether = await make_tether()
    await add_open(tether, "open", open_mcp_server.url)
    await tether.toolsets.create("agent", [{"server": "open"}], actor="admin")
    assert (await tether.call("agent", "add", {"a": 1, "b": 2})).text == "3"
    reads = Reads(tether, monkeypatch)
    await tether.toolsets.update(
        "agent", [{"server": "open", "tools": ["echo"]}], actor="admin"
    )
    reads.take()
    refused = await tether.call("agent", "add", {"a": 1, "b": 2})
    assert refused.error_code == "unknown_tool"
    assert "toolsets.get" in reads.take()
    assert await echo(tether) == "hi"
    # not the view: the tool's definition for the new connection (R6.4.7)
    assert reads.take() == ["tools.get"]
    assert await echo(tether) == "hi"
    assert reads.take() == []
    await tether.toolsets.delete("agent", actor="admin")
    gone = await tether.call("agent", "echo", {"text": "x"})
    assert gone.error_code == "unknown_tool"  # NotFound: no such toolset


async def test_a_server_change_drops_the_views_naming_it(
    make_tether: MakeTether,
    open_mcp_server: MCPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tether = await make_tether()
    await add_open(tether, "open", open_mcp_server.url)
    await add_open(tether, "other", open_mcp_server.url)
    await tether.toolsets.create(
        "agent", [{"server": "open", "tools": ["echo"]}], actor="admin"
    )
    await tether.toolsets.create(
        "unrelated", [{"server": "other", "tools": ["add"]}], actor="admin"
    )
    await echo(tether)
    await tether.call("unrelated", "add", {"a": 1, "b": 1})
    reads = Reads(tether, monkeypatch)
    await tether.servers.update("open", {"enabled": False}, actor="admin")
    reads.take()
    disabled = await tether.call("agent", "echo", {"text": "x"})
    assert disabled.error_code == "server_disabled"
    assert "servers.get_many" in reads.take()
    assert (await tether.toolset("agent")).excluded == {"open": "disabled"}
    # the other toolset's view was left alone
    assert (await tether.call("unrelated", "add", {"a": 1, "b": 1})).text == "2"
    assert reads.take() == []
    await tether.servers.update("open", {"enabled": True}, actor="admin")
    assert await echo(tether) == "hi"
    await tether.delete_server("open", actor="admin")
    deleted = await tether.call("agent", "echo", {"text": "x"})
    assert deleted.error_code == "unknown_tool"


async def test_a_connection_change_drops_the_users_view(
    make_tether: MakeTether,
    auth_server: AuthServer,
    mcp_server: MCPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tether = await make_tether()
    await tether.servers.create(
        oauth_server(mcp_server, name="personal", per_user=True), actor="admin"
    )
    await tether.toolsets.create(
        "mine", [{"server": "personal", "tools": ["whoami"]}], actor="admin"
    )
    before = await tether.toolset("mine", user="dora")
    assert before.tools == ()
    assert "personal" in before.excluded
    reads = Reads(tether, monkeypatch)
    assert (await tether.toolset("mine", user="dora")) is before  # cached
    assert reads.take() == []
    await connect(tether, "personal", user="dora")
    reads.take()
    after = await tether.toolset("mine", user="dora")
    assert [t.name for t in after.tools] == ["whoami"]
    assert reads.take() != []
    result = await tether.call("mine", "whoami", {}, user="dora")
    assert not result.is_error, result.text
    # not the view: the tool's definition for the new connection (R6.4.7)
    assert reads.take() == ["tools.get"]
    result = await tether.call("mine", "whoami", {}, user="dora")
    assert reads.take() == []
    await tether.disconnect("personal", user="dora")
    dropped = await tether.call("mine", "whoami", {}, user="dora")
    assert dropped.error_code == "authorization_required", dropped.text


async def test_a_tool_list_change_drops_the_view(
    make_tether: MakeTether, tmp_peers: PeerFactory
) -> None:
    """``notifications/tools/list_changed`` from the server rebuilds the view."""
    mcp = tmp_peers.mcp_server()
    tether = await make_tether()
    await add_open(tether, "mine", mcp.url)
    await tether.toolsets.create("agent", [{"server": "mine"}], actor="admin")
    assert "added_1" not in (await tether.toolset("agent")).names.by_exposed
    for _ in range(1500):  # polls a real condition; 30 s hang guard
        if await anyio.to_thread.run_sync(mcp.listeners):
            break  # the view's subscription reached the server
        await anyio.sleep(0.02)
    heard = anyio.Event()
    tether.tools.on_tools_changed(lambda _server_id: heard.set())
    changed = await tether.call("agent", "change_tools", {})
    assert changed.text == "added added_1"
    await heard.wait()
    assert "added_1" in (await tether.toolset("agent")).names.by_exposed
    assert not (await tether.call("agent", "added_1", {})).is_error


async def test_another_workers_edit_shows_after_the_ttl(
    make_tether: MakeTether,
    open_mcp_server: MCPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    await add_open(tether, "open", open_mcp_server.url)
    await tether.toolsets.create(
        "agent", [{"server": "open", "tools": ["echo"]}], actor="admin"
    )
    await echo(tether)
    # another worker narrows the toolset straight in the store: no event here
    current = await tether.stores.toolsets.get_by_name("agent")
    assert current is not None
    await tether.stores.toolsets.update(
        dataclasses.replace(current, entries=()), expected_version=current.version
    )
    reads = Reads(tether, monkeypatch)
    assert await echo(tether) == "hi"  # still the cached view
    assert reads.take() == []
    clock.advance(VIEW_TTL)
    assert await echo(tether) == "hi"  # served stale once, rebuilt off the call
    await tether.toolsets.settle()
    assert "toolsets.get" in reads.take()
    assert (await tether.toolset("agent")).tools == ()
    # a toolset deleted by another worker is forgotten by the rebuild
    await tether.stores.toolsets.delete(current.id)
    clock.advance(VIEW_TTL)
    await tether.toolset("agent")
    await tether.toolsets.settle()
    gone = await tether.call("agent", "echo", {"text": "x"})
    assert gone.error_code == "unknown_tool"


async def test_a_name_the_view_lacks_rebuilds_it_once(
    make_tether: MakeTether,
    tmp_peers: PeerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tool added where no event reached this worker is found on the first call."""
    mcp = tmp_peers.mcp_server()
    tether = await make_tether()
    await add_open(tether, "mine", mcp.url)
    await tether.toolsets.create("agent", [{"server": "mine"}], actor="admin")
    await tether.toolset("agent")
    # another worker (same database) adds a tool and refreshes the shared tool
    # cache; this worker hears nothing
    other = await make_tether()
    assert (await other.call_tool("mine", "change_tools", {})).text.startswith("added")
    await other.list_tools("mine", refresh=True)
    reads = Reads(tether, monkeypatch)
    assert not (await tether.call("agent", "added_1", {})).is_error
    assert reads.take() != []
    unknown = await tether.call("agent", "no_such_tool", {})
    assert unknown.error_code == "unknown_tool"
    assert reads.take() != []  # an unknown name costs a rebuild, not a wrong answer


# ------------------------------------------------------------------ fan-out


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


async def test_a_hung_server_is_left_out_by_its_own_deadline(
    make_tether: MakeTether, open_mcp_server: MCPServer, silent_port: int
) -> None:
    tether = await make_tether()
    await add_open(tether, "open", open_mcp_server.url)
    await add_open(
        tether, "hung", f"http://127.0.0.1:{silent_port}/mcp", timeout_seconds=1
    )
    await tether.toolsets.create(
        "agent", [{"server": "hung"}, {"server": "open"}], actor="admin"
    )
    view = await tether.toolset("agent")
    assert "echo" in view.names.by_exposed
    assert set(view.excluded) == {"hung"}
    (unavailable,) = view.unavailable
    assert isinstance(unavailable.error, RequestTimeout), unavailable.error
    swept = await tether.sweep()
    assert isinstance(swept["open"], list)
    assert isinstance(swept["hung"], TetherError)
    health = await tether.stores.tools.get_health(unavailable.server.id, "shared")
    assert health is not None
    assert health.status == "error"


async def test_the_first_view_lists_servers_concurrently_within_the_bound(
    make_tether: MakeTether,
    open_mcp_server: MCPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tether = await make_tether()
    for i in range(10):
        await add_open(tether, f"s{i}", open_mcp_server.url)
    await tether.toolsets.create(
        "wide", [{"server": f"s{i}"} for i in range(10)], actor="admin"
    )
    bound = 3
    active = peak = 0
    full = anyio.Event()

    async def list_within(
        server: ServerRecord,
        subject: str,
        *,
        refresh: bool = False,
        cached: Any = None,
        watch: bool = True,
    ) -> list[dict[str, Any]]:
        """Each call waits until ``bound`` calls are in flight at once."""
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if active == bound:
            full.set()
        await full.wait()
        await anyio.lowlevel.checkpoint()
        active -= 1
        return [{"name": "echo", "inputSchema": {"type": "object"}}]

    monkeypatch.setattr(tether.tools, "list_within", list_within)
    tether.toolsets.fan_out = bound
    with anyio.fail_after(120):  # a sequential build would wait forever
        view = await tether.toolset("wide")
    assert len(view.tools) == 10
    assert peak == bound  # concurrent, and never more than the bound

    bound, peak, full = 4, 0, anyio.Event()
    with anyio.fail_after(120):
        listed = await tether.list_tools_many(concurrency=bound)
    assert set(listed) == {f"s{i}" for i in range(10)}
    assert peak == bound

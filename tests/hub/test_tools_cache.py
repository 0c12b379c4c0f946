"""Caches on the tool-call path, on a fake clock (issue #3).

The tool-list cache (soft expiry 1 h: serve stale, refresh in the background; hard
expiry 2 h: refetch), the server-record cache of the facade, the token cache of
:class:`~tether.hub.tools.HubTokenSource`, the refresh margin capped at half a token's
lifetime, progress through the facade, and toolset calls to excluded servers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest
from pydantic import SecretStr

from hub.conftest import FakeClock, MakeTether, oauth_server
from peers.fixture import AuthServer, MCPServer
from tether.errors import AuthorizationRequired
from tether.hub.cache import SERVER_TTL
from tether.hub.connections import Connections
from tether.hub.tether import Tether
from tether.hub.tools import TOKEN_TTL, HubTokenSource, ToolRegistry
from tether.store.base import SHARED, Connection, ServerRecord

pytestmark = pytest.mark.realservers

LOOPBACK = ["127.0.0.0/8"]


async def open_server(tether: Tether, mcp: MCPServer, name: str = "open") -> str:
    record = await tether.servers.create(
        {"name": name, "url": mcp.url, "allow_networks": LOOPBACK}, actor="admin"
    )
    return record.id


async def fetched_at(tether: Tether, server_id: str) -> datetime:
    entry = await tether.stores.tools.get(server_id, SHARED)
    assert entry is not None
    return entry.fetched_at


# ------------------------------------------------------------------ tool-list cache


async def test_soft_expiry_serves_stale_and_refreshes_in_background(
    make_tether: MakeTether, open_mcp_server: MCPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    server_id = await open_server(tether, open_mcp_server)
    first = await tether.list_tools("open")
    fetched = await fetched_at(tether, server_id)

    clock.advance(timedelta(minutes=59))  # fresh: no refresh at all
    refreshes: list[str] = []
    release, done = anyio.Event(), anyio.Event()
    original = ToolRegistry.refresh_tools

    async def gated(
        self: ToolRegistry, server: ServerRecord, subject: str
    ) -> list[dict[str, Any]]:
        refreshes.append(subject)
        await release.wait()
        tools = await original(self, server, subject)
        done.set()
        return tools

    monkeypatch.setattr(ToolRegistry, "refresh_tools", gated)
    assert await tether.list_tools("open") == first
    assert refreshes == []

    clock.advance(timedelta(minutes=2))  # 61 min: stale, served at once
    with anyio.fail_after(30):  # a hang guard only
        assert await tether.list_tools("open") == first  # the refresh is still gated
    await anyio.lowlevel.checkpoint()
    assert refreshes == [SHARED]
    assert await tether.list_tools("open") == first  # no second background refresh
    assert refreshes == [SHARED]
    release.set()
    with anyio.fail_after(30):  # a hang guard only
        await done.wait()
    assert fetched != clock.now()
    assert await fetched_at(tether, server_id) == clock.now()


async def test_hard_expiry_refetches_before_answering(
    make_tether: MakeTether, open_mcp_server: MCPServer
) -> None:
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    server_id = await open_server(tether, open_mcp_server)
    await tether.list_tools("open")
    clock.advance(timedelta(hours=2))
    tools = await tether.list_tools("open")
    assert await fetched_at(tether, server_id) == clock.now()  # no stale answer
    assert {"echo", "slow"} <= {t["name"] for t in tools}


# ------------------------------------------------------------------ server records


async def test_call_tool_reads_the_server_once_per_ttl(
    make_tether: MakeTether, open_mcp_server: MCPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No store lookups on repeated calls; local updates at once, remote within TTL."""
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    await open_server(tether, open_mcp_server)
    lookups: list[str] = []
    store = tether.stores.servers
    by_id, by_name = store.get, store.get_by_name

    async def get(ref: str) -> ServerRecord | None:
        lookups.append(ref)
        return await by_id(ref)

    async def get_by_name(ref: str) -> ServerRecord | None:
        lookups.append(ref)
        return await by_name(ref)

    monkeypatch.setattr(store, "get", get)
    monkeypatch.setattr(store, "get_by_name", get_by_name)
    for text in ("a", "b", "c"):
        assert (await tether.call_tool("open", "echo", {"text": text})).text == text
    assert len(lookups) <= 2  # the first call only: by id, then by name

    # an update on this worker is seen by the next call
    await tether.servers.update("open", {"enabled": False}, actor="admin")
    disabled = await tether.call_tool("open", "echo", {"text": "x"})
    assert disabled.error_code == "server_disabled"

    # a change written by another worker (straight to the store) shows up after TTL
    current = await by_name("open")
    assert current is not None
    await store.update(current.replace(enabled=True), expected_version=current.version)
    assert (await tether.call_tool("open", "echo", {"text": "x"})).is_error
    clock.advance(SERVER_TTL)
    assert (await tether.call_tool("open", "echo", {"text": "x"})).text == "x"

    await tether.delete_server("open", actor="admin")
    gone = await tether.call_tool("open", "echo", {"text": "x"})
    assert gone.error_code == "unknown_tool"  # NotFound, as for any unknown name


# ------------------------------------------------------------------ tokens


class StubConnections:
    """What HubTokenSource uses of Connections, counting store reads."""

    def __init__(self, clock: FakeClock, lifetime: timedelta) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.reads = 0
        self.conn = self._fresh("t0")

    def _fresh(self, value: str) -> Connection:
        now = self.clock.now()
        return Connection(
            server_id="s",
            subject=SHARED,
            status="connected",
            access_token=SecretStr(value),
            expires_at=now + self.lifetime,
            refreshed_at=now,
        )

    async def usable(self, server: ServerRecord, subject: str) -> Connection:
        self.reads += 1
        if self.refresh_due(self.conn) <= self.clock.now():
            self.conn = self._fresh(f"t{self.reads}")
        return self.conn

    def refresh_due(self, conn: Connection) -> datetime:
        assert conn.expires_at is not None
        return conn.expires_at - min(timedelta(seconds=60), self.lifetime / 2)

    async def get(self, server: ServerRecord, subject: str) -> Connection:
        self.reads += 1
        return self.conn


def token_source(stub: StubConnections, clock: FakeClock) -> HubTokenSource:
    server = ServerRecord(id="s", name="s", url="https://mcp.example/mcp")
    return HubTokenSource(cast(Connections, stub), server, SHARED, clock=clock)


async def test_token_source_reads_the_store_once_per_ttl() -> None:
    clock = FakeClock()
    stub = StubConnections(clock, timedelta(hours=1))
    source = token_source(stub, clock)
    first = await source.current()
    for _ in range(5):
        assert await source.current() is first
    assert stub.reads == 1
    clock.advance(TOKEN_TTL)  # bounded staleness: another worker's change shows up
    assert (await source.current()).access_token == first.access_token
    assert stub.reads == 2


async def test_token_source_rereads_at_refresh_time_and_after_rejection() -> None:
    clock = FakeClock()
    stub = StubConnections(clock, timedelta(seconds=4))  # due after 2 s
    source = token_source(stub, clock)
    first = await source.current()
    clock.advance(timedelta(seconds=1))
    assert await source.current() is first
    clock.advance(timedelta(seconds=1))  # half-life: refreshed, before TOKEN_TTL
    second = await source.current()
    assert second.access_token != first.access_token
    assert stub.reads == 2

    stub.conn = stub._fresh("rotated-elsewhere")  # a peer worker refreshed
    again = await source.rejected(second, None, status=401)  # 401 always re-reads
    assert again.access_token == "rotated-elsewhere"
    assert (await source.current()).access_token == "rotated-elsewhere"


async def test_refresh_margin_is_capped_at_half_the_lifetime(
    make_tether: MakeTether,
) -> None:
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    now = clock.now()

    def conn(
        lifetime: timedelta,
        refreshed_at: datetime | None = None,
        connected_at: datetime | None = None,
    ) -> Connection:
        return Connection(
            server_id="s",
            subject=SHARED,
            expires_at=now + lifetime,
            refreshed_at=refreshed_at,
            connected_at=connected_at,
        )

    short = conn(timedelta(seconds=5), refreshed_at=now)
    assert not tether.connections.needs_refresh(short)  # was: always inside 60 s
    clock.advance(timedelta(seconds=2.5))
    assert tether.connections.needs_refresh(short)
    clock.current = now
    by_connect = conn(timedelta(seconds=10), connected_at=now)
    assert tether.connections.refresh_due(by_connect) == now + timedelta(seconds=5)
    hour = conn(timedelta(hours=1), refreshed_at=now)
    assert tether.connections.refresh_due(hour) == now + timedelta(minutes=59)
    unknown = conn(timedelta(seconds=30))  # no issue time: the plain 60 s margin
    assert tether.connections.needs_refresh(unknown)


# ------------------------------------------------------------------ facade


async def test_progress_through_call_tool_and_toolset_call(
    make_tether: MakeTether, open_mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    await open_server(tether, open_mcp_server)
    await tether.toolsets.create("agent", [{"server": "open"}], actor="admin")
    events: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, msg: str | None) -> None:
        events.append((done, total, msg))

    args = {"seconds": 0.2, "steps": 2}
    for via in ("call_tool", "call"):
        events.clear()
        if via == "call_tool":
            result = await tether.call_tool("open", "slow", args, progress=progress)
        else:
            result = await tether.call("agent", "slow", args, progress=progress)
        assert result.text == "slept 0.2s in 2 steps", result.text
        assert events == [(1, 2, "step 1/2"), (2, 2, "step 2/2")]


async def test_toolset_call_to_an_unconnected_server_asks_to_connect(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    await tether.servers.create(
        oauth_server(mcp_server, name="personal", per_user=True), actor="admin"
    )
    await tether.servers.create(oauth_server(mcp_server, name="team"), actor="admin")
    await tether.toolsets.create(
        "mine",
        [{"server": "personal", "tools": ["whoami"]}, {"server": "team"}],
        actor="admin",
    )
    view = await tether.toolset("mine", user="carol")
    assert view.tools == ()
    listed = await tether.call("mine", "whoami", {}, user="carol")
    assert listed.error_code == "authorization_required", listed
    with pytest.raises(AuthorizationRequired) as named:
        await tether.call("mine", "whoami", {}, user="carol", raise_errors=True)
    assert named.value.server == "personal"
    # a tool of 'team', whose list is unknown until someone connects it
    unlisted = await tether.call("mine", "echo", {"text": "x"}, user="carol")
    assert unlisted.error_code == "authorization_required", unlisted
    with pytest.raises(AuthorizationRequired) as named:
        await tether.call("mine", "echo", {}, user="carol", raise_errors=True)
    assert named.value.server == "team"

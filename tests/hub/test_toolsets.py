"""Toolsets and the tool cache against real peers (issue #3).

Validation of allow-lists and servers, export/import by name, exclusion of unusable
servers, cache and session invalidation on disconnect and server change, and
``test_connection`` leaving cache and health alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hub.conftest import LOOPBACK, MakeTether, connect, oauth_server
from peers.fixture import AuthServer, MCPServer
from peers.plugin import PeerFactory
from tether.errors import AuthorizationRequired, ValidationFailed
from tether.hub.tether import Tether
from tether.store.base import SHARED
from tether.store.crypto import KeyRing

pytestmark = pytest.mark.realservers


async def add_open(tether: Tether, name: str, mcp: MCPServer) -> str:
    """Register an unauthenticated server; its id."""
    record = await tether.servers.create(
        {"name": name, "url": mcp.url, "allow_networks": LOOPBACK}, actor="admin"
    )
    return record.id


async def test_empty_allow_list_and_unknown_server_refused(
    make_tether: MakeTether, open_mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    await add_open(tether, "open", open_mcp_server)
    with pytest.raises(ValidationFailed) as empty:
        await tether.toolsets.create(
            "t", [{"server": "open", "tools": []}], actor="admin"
        )
    assert "servers.open.tools" in empty.value.details["fields"]
    assert "empty allow-list" in str(empty.value)
    with pytest.raises(ValidationFailed) as blank:
        await tether.toolsets.create(
            "t", [{"server": "open", "tools": ["  "]}], actor="admin"
        )
    assert "servers.open.tools" in blank.value.details["fields"]
    with pytest.raises(ValidationFailed) as unknown:
        await tether.toolsets.create(
            "t", [{"server": "open"}, {"server": "ghost"}], actor="admin"
        )
    assert "ghost" in unknown.value.details["fields"]["servers"]
    assert await tether.stores.toolsets.get_by_name("t") is None


async def test_export_import_round_trip_by_name(
    make_tether: MakeTether, open_mcp_server: MCPServer, tmp_path: Path
) -> None:
    """Export names servers; another Tether with the same names imports it."""
    source = await make_tether()
    await add_open(source, "open", open_mcp_server)
    await add_open(source, "other", open_mcp_server)
    await source.toolsets.create(
        "agent",
        [{"server": "open", "tools": ["echo", "add"]}, {"server": "other"}],
        description="for the agent",
        actor="admin",
    )
    exported = await source.toolsets.export("agent")
    assert exported == {
        "name": "agent",
        "description": "for the agent",
        "servers": [
            {"server": "open", "tools": ["echo", "add"]},
            {"server": "other", "tools": None},
        ],
    }

    target = await make_tether(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'target.db'}",
        key_ring=KeyRing.generate(),
    )
    open_id = await add_open(target, "open", open_mcp_server)
    await add_open(target, "other", open_mcp_server)
    imported = await target.toolsets.import_(exported, actor="admin")
    assert imported.entries[0].server_id == open_id  # resolved by name, new ids
    assert await target.toolsets.export("agent") == exported
    view = await target.toolset("agent")
    assert {t.original_name for t in view.tools if t.server_id == open_id} == {
        "echo",
        "add",
    }
    assert (await target.call("agent", "open__echo", {"text": "x"})).text == "x"


async def test_import_with_missing_tool_or_server_refused(
    make_tether: MakeTether, open_mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    await add_open(tether, "open", open_mcp_server)
    data = {
        "name": "bad",
        "servers": [{"server": "open", "tools": ["echo", "no_such_tool"]}],
    }
    with pytest.raises(ValidationFailed) as missing:
        await tether.toolsets.import_(data, actor="admin")
    assert missing.value.details["fields"] == {
        "servers.open.tools": "not offered: no_such_tool"
    }
    assert "no_such_tool" in str(missing.value)
    with pytest.raises(ValidationFailed) as ghost:
        await tether.toolsets.import_(
            {"name": "bad", "servers": [{"server": "ghost", "tools": None}]},
            actor="admin",
        )
    assert "ghost" in str(ghost.value)
    assert await tether.stores.toolsets.get_by_name("bad") is None


async def test_disabled_and_unconnected_servers_excluded_with_reason(
    make_tether: MakeTether, open_mcp_server: MCPServer, mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    await add_open(tether, "open", open_mcp_server)
    await add_open(tether, "spare", open_mcp_server)
    await tether.servers.create(oauth_server(mcp_server, name="locked"), actor="admin")
    await tether.toolsets.create(
        "mix",
        [
            {"server": "open", "tools": ["echo"]},
            {"server": "spare", "tools": ["add"]},
            {"server": "locked"},
        ],
        actor="admin",
    )
    await tether.servers.update("spare", {"enabled": False}, actor="admin")
    view = await tether.toolset("mix")
    assert [t.name for t in view.tools] == ["echo"]
    assert view.excluded["spare"] == "disabled"
    assert view.excluded["locked"].startswith("authorization_required")
    called = await tether.call("mix", "add", {"a": 1, "b": 1})
    assert called.error_code == "server_disabled"  # its allow-list names 'add'
    locked = await tether.call("mix", "whoami", {})
    assert locked.error_code == "authorization_required"  # 'locked' is not connected
    direct = await tether.call_tool("spare", "add", {"a": 1, "b": 1})
    assert direct.error_code == "server_disabled"


async def test_server_change_drops_cache_and_session(
    make_tether: MakeTether, tmp_peers: PeerFactory
) -> None:
    """Any server update forgets its tool list and its MCP session."""
    mcp = tmp_peers.mcp_server(MCP_PROTOCOL_VERSIONS="2025-11-25")  # has sessions
    tether = await make_tether()
    server_id = await add_open(tether, "s", mcp)
    await tether.list_tools("s")
    assert await tether.stores.tools.get(server_id, SHARED) is not None
    first_health = await tether.stores.tools.get_health(server_id, SHARED)
    assert first_health is not None
    assert first_health.checked_at is not None
    await tether.call_tool("s", "echo", {"text": "a"})
    first_session = mcp.calls()[-1]["session_id"]
    assert first_session

    await tether.servers.update("s", {"timeout_seconds": 20}, actor="admin")
    assert await tether.stores.tools.get(server_id, SHARED) is None
    await tether.call_tool("s", "echo", {"text": "b"})
    assert mcp.calls()[-1]["session_id"] not in (None, first_session)
    await tether.list_tools("s")  # refetched, health recorded again
    health = await tether.stores.tools.get_health(server_id, SHARED)
    assert health is not None
    assert health.checked_at is not None
    assert health.checked_at > first_health.checked_at


async def test_disconnect_drops_cache_and_health_turns_error(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(mcp_server), actor="admin")
    await connect(tether, "demo")
    await tether.list_tools("demo")
    assert await tether.stores.tools.get(server.id, SHARED) is not None
    health = await tether.stores.tools.get_health(server.id, SHARED)
    assert health is not None
    assert health.status == "ok"

    await tether.disconnect("demo", actor="admin")
    assert await tether.stores.tools.get(server.id, SHARED) is None
    with pytest.raises(AuthorizationRequired):
        await tether.list_tools("demo")
    after = await tether.stores.tools.get_health(server.id, SHARED)
    assert after is not None
    assert after.status == "error"
    assert after.last_error
    result = await tether.call_tool("demo", "echo", {"text": "x"})
    assert result.error_code == "authorization_required"


async def test_test_connection_leaves_cache_and_health_alone(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server_2025_11_25: MCPServer
) -> None:
    tether = await make_tether()
    server = await tether.servers.create(
        oauth_server(mcp_server_2025_11_25), actor="admin"
    )
    await connect(tether, "demo")
    probe = await tether.test_connection("demo")
    assert probe.protocol_version == "2025-11-25"
    assert "tools" in probe.capabilities
    assert probe.server_info.get("name") == "tether-peers-mcp"
    assert {"echo", "add", "whoami"} <= set(probe.tool_names)
    assert probe.tool_count == len(probe.tool_names)
    assert await tether.stores.tools.get(server.id, SHARED) is None
    assert await tether.stores.tools.get_health(server.id, SHARED) is None

    # with a cache present, it is left exactly as it was
    await tether.list_tools("demo")
    entry = await tether.stores.tools.get(server.id, SHARED)
    health = await tether.stores.tools.get_health(server.id, SHARED)
    await tether.test_connection("demo")
    assert await tether.stores.tools.get(server.id, SHARED) == entry
    assert await tether.stores.tools.get_health(server.id, SHARED) == health


async def test_an_absent_allow_listed_tool_is_refused_or_warned_once(
    make_tether: MakeTether,
    open_mcp_server: MCPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 10 item 9: refused when the tool list is known, else warned once known."""
    tether = await make_tether()
    await add_open(tether, "open", open_mcp_server)
    # nothing known yet (and nothing fetched): accepted
    early = await tether.toolsets.create(
        "early", [{"server": "open", "tools": ["echo", "no_such"]}], actor="admin"
    )
    caplog.set_level(logging.WARNING, logger="tether.hub.toolsets")
    view = await tether.toolset("early")
    assert [d.original_name for d in view.tools] == ["echo"]
    await tether.toolset("early", refresh=True)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "toolset 'early': server 'open' has no tool 'no_such'; the allow-list entry "
        "offers nothing (edit the toolset, or check the server)"
    ]
    # the list is known now: the same entry is refused, on create and on update
    with pytest.raises(ValidationFailed) as refused:
        await tether.toolsets.create(
            "late", [{"server": "open", "tools": ["echo", "no_such"]}], actor="admin"
        )
    assert refused.value.details["fields"] == {
        "servers.open.tools": "the server has no tool 'no_such'"
    }
    assert "--refresh" in (refused.value.hint or "")
    with pytest.raises(ValidationFailed):
        await tether.toolsets.update(
            early.id, [{"server": "open", "tools": ["nope"]}], actor="admin"
        )
    assert await tether.stores.toolsets.get_by_name("late") is None
    ok = await tether.toolsets.create(
        "late", [{"server": "open", "tools": ["echo"]}], actor="admin"
    )
    assert ok.entries[0].tools == ("echo",)

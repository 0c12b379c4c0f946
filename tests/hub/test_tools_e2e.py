"""Tools through the facade against SDK MCP servers: list, call, toolsets."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from hub.conftest import REDIRECT_URI, MakeTether
from peers.fixture import AuthServer, MCPServer
from tether.hub.tether import Tether
from tether.net.browser import follow_authorization
from tether.net.policy import NetworkPolicy
from tether.store.crypto import KeyRing

pytestmark = pytest.mark.realservers

LOOPBACK = ["127.0.0.0/8"]


async def test_open_server_list_call_and_toolset(
    make_tether: MakeTether, open_mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    await tether.servers.create(
        {"name": "open", "url": open_mcp_server.url, "allow_networks": LOOPBACK},
        actor="admin",
    )
    tools = await tether.list_tools("open")
    assert {"echo", "add", "fail"} <= {t["name"] for t in tools}
    result = await tether.call_tool("open", "add", {"a": 2, "b": 3})
    assert not result.is_error
    assert "5" in result.text
    failed = await tether.call_tool("open", "fail", {"message": "boom"})
    assert failed.is_error
    assert "boom" in failed.text
    await tether.toolsets.create(
        "agent", [{"server": "open", "tools": ["echo"]}], actor="admin"
    )
    view = await tether.toolset("agent", reserved=["echo"])
    assert [t.original_name for t in view.tools] == ["echo"]
    assert view.tools[0].name != "echo"  # reserved by the host app
    echoed = await tether.call(
        "agent", view.tools[0].name, {"text": "hi"}, reserved=["echo"]
    )
    assert echoed.text == "hi"
    unknown = await tether.call("agent", "nope", {})
    assert unknown.is_error
    assert unknown.error_code == "unknown_tool"


async def test_oauth_server_tools_after_connect(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    await tether.servers.create(
        {
            "name": "oauth",
            "url": mcp_server.url,
            "auth_mode": "oauth",
            "allow_networks": LOOPBACK,
        },
        actor="admin",
    )
    before = await tether.call_tool("oauth", "whoami", {})
    assert before.is_error
    assert before.error_code == "authorization_required"
    started = await tether.connect("oauth", user="admin")
    params = await follow_authorization(
        started.authorization_url, REDIRECT_URI, NetworkPolicy.from_allowlist(LOOPBACK)
    )
    await tether.complete(params, user="admin")
    result = await tether.call_tool("oauth", "whoami", {})
    assert not result.is_error, result.text


async def test_opened_and_closed_inside_the_applications_scopes(
    db_path: Path, open_mcp_server: MCPServer
) -> None:
    """R6.4.5: an application may time out ``open`` and close from another task.

    A live session (its listen stream runs once a tool list is held) must not tie the
    pool's task group to the task that opened the facade.
    """
    with anyio.fail_after(120):  # the application's own timeout around open
        tether = await Tether.open(
            database_url=f"sqlite+aiosqlite:///{db_path}",
            key_ring=KeyRing.generate(),
            redirect_uri=REDIRECT_URI,
            allow_networks=LOOPBACK,
        )
    await tether.servers.create(
        {"name": "open", "url": open_mcp_server.url, "allow_networks": LOOPBACK},
        actor="admin",
    )
    with anyio.CancelScope():
        assert await tether.list_tools("open")
        result = await tether.call_tool("open", "add", {"a": 2, "b": 3})
    assert "5" in result.text
    async with anyio.create_task_group() as tg:  # a shutdown hook in another task
        tg.start_soon(tether.aclose)

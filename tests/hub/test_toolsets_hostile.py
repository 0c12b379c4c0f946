"""One bad tool never breaks a toolset (issue 11 item 7), against a real MCP peer.

The peer (``MCP_HOSTILE_TOOLS=1``) lists ``same`` five times and three tools whose
schemas cannot be flattened: a dangling ``$ref``, an external ``$ref`` and a schema that
expands past the node cap. The toolset still renders every other tool, once each, and
says why the poisoned ones are left out.
"""

from __future__ import annotations

import pytest

from hub.conftest import LOOPBACK, MakeTether
from peers.fixture import MCPServer
from peers.plugin import PeerFactory
from tether.mcp.naming import NAME_PATTERN
from tether.mcp.render import PROVIDERS, render_toolset

pytestmark = pytest.mark.realservers


@pytest.fixture(scope="module")
def hostile_mcp_server(peer_factory: PeerFactory) -> MCPServer:
    return peer_factory.mcp_server(MCP_HOSTILE_TOOLS="1")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_poisoned_and_repeated_tools_leave_the_rest_usable(
    make_tether: MakeTether,
    hostile_mcp_server: MCPServer,
    open_mcp_server: MCPServer,
    provider: str,
) -> None:
    tether = await make_tether()
    for name, peer in (("hostile", hostile_mcp_server), ("plain", open_mcp_server)):
        await tether.servers.create(
            {"name": name, "url": peer.url, "allow_networks": LOOPBACK}, actor="admin"
        )
    await tether.toolsets.create(
        "mix",
        [{"server": "hostile"}, {"server": "plain", "tools": ["add"]}],
        actor="admin",
    )
    view = await tether.toolset("mix")
    names = [t.name for t in view.tools]
    assert len(names) == len({n.lower() for n in names})
    assert all(NAME_PATTERN.match(n) for n in names)
    assert [t.description for t in view.tools if t.original_name == "same"] == [
        "Listed five times (0)."  # the server's first listing stands for all five
    ]

    rendered = render_toolset(view.tools, provider)  # type: ignore[arg-type]
    left_out = {e.original_name: e for e in rendered.excluded}
    assert set(left_out) == {"dangling", "external", "exponential"}
    assert "dangling reference" in left_out["dangling"].reason
    assert "external reference" in left_out["external"].reason
    assert "more than 5000 nodes" in left_out["exponential"].reason
    assert {e.code for e in rendered.excluded} == {"invalid_response"}
    assert len(rendered.tools) == len(view.tools) - 3
    shown = [tool.get("name") or tool["function"]["name"] for tool in rendered.tools]
    assert "echo" in shown
    assert "plain__add" in shown  # both servers offer add

    called = await tether.call("mix", "same", {})
    assert not called.is_error

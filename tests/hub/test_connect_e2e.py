"""The OAuth connection flow end to end against oidc-provider and an SDK MCP server."""

from __future__ import annotations

import pytest

from hub.conftest import REDIRECT_URI, MakeTether
from peers.fixture import AuthServer, MCPServer
from tether.net.browser import follow_authorization
from tether.net.policy import NetworkPolicy

pytestmark = pytest.mark.realservers

POLICY = NetworkPolicy.from_allowlist(["127.0.0.0/8"])


async def test_dynamic_registration_connect(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    tether = await make_tether()
    server = await tether.servers.create(
        {
            "name": "demo",
            "url": mcp_server.url,
            "auth_mode": "oauth",
            "allow_networks": ["127.0.0.0/8"],
        },
        actor="admin",
    )
    started = await tether.connect(server.name, user="admin")
    params = await follow_authorization(started.authorization_url, REDIRECT_URI, POLICY)
    info = await tether.complete(params, user="admin")
    assert info.status == "connected"
    assert info.has_refresh_token

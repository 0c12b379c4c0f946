"""Tool calls on OAuth servers: token refresh, step-up, per-user isolation (issue #3).

Everything runs against the real oidc-provider and the SDK MCP server on loopback; the
MCP server's ``.calls()`` record and the AS request log prove what each side saw.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from hub.conftest import (
    POLICY,
    REDIRECT_URI,
    FakeClock,
    MakeTether,
    as_requests,
    connect,
    oauth_server,
    secret,
    stored,
)
from peers.fixture import AuthServer, MCPServer
from peers.plugin import PeerFactory
from tether.errors import AuthorizationRequired
from tether.hub.tether import Tether
from tether.net.browser import follow_authorization

pytestmark = pytest.mark.realservers


def token_posts(auth: AuthServer) -> int:
    """How many token-endpoint requests the AS logged."""
    return len(as_requests(auth, "POST", "/token"))


def mcp_posts(mcp: MCPServer) -> list[str]:
    """The MCP server's access-log lines for POST /mcp."""
    return [line for line in mcp.log().splitlines() if '"POST /mcp' in line]


async def test_proactive_refresh_before_the_call(
    make_tether: MakeTether, tmp_peers: PeerFactory
) -> None:
    """A token past its capped margin is refreshed once, before the call is sent.

    The 60 s margin (RFR-2) is capped at half the token's lifetime: a 100 s token is
    due after 50 s, not after 40 s. Tether's clock is a fake one moved by the test, so
    the check never races the wall clock; the AS issues real 100 s tokens that stay
    valid at the MCP server for the whole test.
    """
    auth = tmp_peers.auth_server(AS_ACCESS_TOKEN_TTL=100, AS_LOG=1)
    mcp = tmp_peers.mcp_server(auth, MCP_LOG_LEVEL="info")  # uvicorn access log
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    server = await tether.servers.create(oauth_server(mcp), actor="admin")
    await connect(tether, "demo")
    before = await stored(tether, server.id)
    assert before.expires_at is not None
    assert before.refreshed_at is not None or before.connected_at is not None
    posts = token_posts(auth)
    seen = len(mcp_posts(mcp))  # connect may probe /mcp for a challenge (a 401)

    # 45 s on: 55 s left, inside the uncapped 60 s margin but not the capped 50 s one
    clock.advance(timedelta(seconds=45))
    assert not (await tether.call_tool("demo", "whoami", {})).is_error
    assert token_posts(auth) == posts
    assert secret((await stored(tether, server.id)).access_token) == secret(
        before.access_token
    )

    # 51 s on: past half the lifetime, so the call refreshes first
    clock.advance(timedelta(seconds=6))
    result = await tether.call_tool("demo", "whoami", {})
    assert not result.is_error, result.text
    after = await stored(tether, server.id)
    assert after.refreshed_at is not None
    assert after.refreshed_at != before.refreshed_at
    assert secret(after.access_token) != secret(before.access_token)
    assert after.expires_at is not None
    assert after.expires_at > before.expires_at
    # exactly one refresh grant went to the AS: the refreshed token is not due again
    # for 50 s of the fake clock, so the next call reuses it
    assert token_posts(auth) - posts == 1
    assert (await tether.call_tool("demo", "echo", {"text": "x"})).text == "x"
    assert token_posts(auth) - posts == 1
    # the calls carried valid tokens: never a 401
    access = mcp_posts(mcp)[seen:]
    assert access, mcp.log_tail()
    assert not [line for line in access if '" 401' in line]
    info = await tether.connection("demo")
    assert info.status == "connected"
    assert info.refreshed_at == after.refreshed_at


async def test_reactive_refresh_after_401(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    """A stored token the server rejects: 401 → one refresh → the call succeeds."""
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(mcp_server), actor="admin")
    await connect(tether, "demo")
    conn = await stored(tether, server.id)
    assert conn.refresh_token is not None
    await tether.stores.connections.save(
        conn.replace(access_token=SecretStr("garbage"), expires_at=None),
        expected_version=conn.version,
    )
    mcp_server.clear_calls()

    result = await tether.call_tool("demo", "whoami", {})
    assert not result.is_error, result.text
    assert result.structured["sub"] == "test-user"
    after = await stored(tether, server.id)
    assert secret(after.access_token) not in ("garbage", secret(conn.access_token))
    assert after.refreshed_at is not None
    assert after.status == "connected"
    assert [c["tool"] for c in mcp_server.calls()] == ["whoami"]

    # a second call reuses the refreshed token: no further refresh
    refreshed_at = after.refreshed_at
    assert not (await tether.call_tool("demo", "echo", {"text": "x"})).is_error
    assert (await stored(tether, server.id)).refreshed_at == refreshed_at


async def step_up(tether: Tether, server_id: str, mcp: MCPServer) -> None:
    """Call ``admin_only`` without mcp:admin, then reconnect and call it again."""
    await connect(tether, "demo")
    assert "mcp:admin" not in (await stored(tether, server_id)).scopes
    assert not (await tether.call_tool("demo", "echo", {"text": "x"})).is_error

    denied = await tether.call_tool("demo", "admin_only", {})
    assert denied.is_error
    assert denied.error_code == "step_up_required", denied
    info = await tether.connection("demo")
    # the grant keeps working for everything else: one user's call must not take a
    # shared connection down (issue 7 item 6); the next connect asks for more
    assert info.status == "connected"
    assert "mcp:admin" in info.required_scopes
    assert "mcp:tools" in info.required_scopes  # granted scopes are kept in the union
    assert "admin_only" not in [c["tool"] for c in mcp.calls()]  # refused at the gate
    assert not (await tether.call_tool("demo", "echo", {"text": "y"})).is_error

    started = await tether.connect("demo", user="admin")
    query = parse_qs(urlsplit(started.authorization_url).query)
    assert {"mcp:tools", "mcp:admin"} <= set(query["scope"][0].split())
    params = await follow_authorization(started.authorization_url, REDIRECT_URI, POLICY)
    info = await tether.complete(params, user="admin")
    assert info.status == "connected"
    assert "mcp:admin" in info.scopes
    assert info.required_scopes == ()

    allowed = await tether.call_tool("demo", "admin_only", {})
    assert not allowed.is_error, allowed.text
    assert allowed.text == "admin ok for test-user"
    assert "mcp:admin" in mcp.calls()[-1]["scope"].split()


async def test_insufficient_scope_then_step_up(
    make_tether: MakeTether, auth_server: AuthServer, tmp_peers: PeerFactory
) -> None:
    """403 insufficient_scope → ``step_up_required``; a reconnect asks for the scope.

    The PRM advertises only mcp:tools, so the first connect asks for just that; the
    client is registered without a scope restriction.
    """
    mcp = tmp_peers.mcp_server(auth_server, MCP_SCOPES_SUPPORTED="mcp:tools")
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(mcp), actor="admin")
    await step_up(tether, server.id, mcp)


async def test_step_up_with_configured_scopes(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    """Same flow with ``oauth.scopes="mcp:tools"`` configured on the server."""
    tether = await make_tether()
    server = await tether.servers.create(
        oauth_server(mcp_server, scopes="mcp:tools"), actor="admin"
    )
    await step_up(tether, server.id, mcp_server)
    # the dynamic client was widened in place (RFC 7592), not replaced
    conn = await stored(tether, server.id)
    assert conn.issuer is not None
    registration = await tether.stores.registrations.get(server.id, conn.issuer)
    assert registration is not None
    assert registration.client_id == conn.client_id
    assert "mcp:admin" in str(registration.metadata["scope"]).split()


async def connect_as(tether: Tether, server: str, user: str) -> None:
    """Connect a per-user server for ``user``; the AS picks the subject by login_hint."""
    started = await tether.connect(server, user=user)
    params = await follow_authorization(
        f"{started.authorization_url}&login_hint={user}", REDIRECT_URI, POLICY
    )
    info = await tether.complete(params, user=user)
    assert info.status == "connected", info
    assert info.subject == user


async def test_per_user_isolation(
    make_tether: MakeTether, auth_server: AuthServer, tmp_peers: PeerFactory
) -> None:
    """Users A and B call with their own tokens; a user without a grant is refused."""
    mcp = tmp_peers.mcp_server(auth_server)
    tether = await make_tether()
    server = await tether.servers.create(
        oauth_server(mcp, name="personal", per_user=True), actor="admin"
    )
    await connect_as(tether, "personal", "alice")
    await connect_as(tether, "personal", "bob")
    alice = await stored(tether, server.id, "alice")
    bob = await stored(tether, server.id, "bob")
    assert secret(alice.access_token) != secret(bob.access_token)

    for user in ("alice", "bob", "alice"):
        result = await tether.call_tool("personal", "whoami", {}, user=user)
        assert not result.is_error, result.text
        assert result.structured["sub"] == user
    subs = [c["sub"] for c in mcp.calls() if c["tool"] == "whoami"]
    assert subs == ["alice", "bob", "alice"]
    client_ids = {c["client_id"] for c in mcp.calls()}
    assert client_ids == {alice.client_id}  # one client, two subjects

    # tool caches are per subject, too
    assert await tether.list_tools("personal", user="alice")
    assert await tether.stores.tools.get(server.id, "alice") is not None
    assert await tether.stores.tools.get(server.id, "carol") is None

    nobody = await tether.call_tool("personal", "whoami", {}, user="carol")
    assert nobody.is_error
    assert nobody.error_code == "authorization_required"
    # no user at all: the toolset leaves the server out, and a call to its tool
    # says it needs a connection (not "unknown tool"), as call_tool does
    await tether.toolsets.create(
        "mine", [{"server": "personal", "tools": ["whoami"]}], actor="admin"
    )
    anonymous = await tether.call("mine", "whoami", {}, user=None)
    assert anonymous.is_error
    assert anonymous.error_code == "authorization_required"
    anonymous = await tether.call_tool("personal", "whoami", {}, user=None)
    assert anonymous.is_error
    assert anonymous.error_code == "authorization_required"
    with pytest.raises(AuthorizationRequired):
        await tether.call_tool("personal", "whoami", {}, user=None, raise_errors=True)
    assert len(mcp.calls()) == 3  # none of these reached the server
    carol_view = await tether.toolset("mine", user="carol")
    assert carol_view.tools == ()
    assert carol_view.excluded["personal"].startswith("authorization_required")

    # B disconnecting leaves A working
    await tether.disconnect("personal", user="bob")
    gone = await tether.call_tool("personal", "whoami", {}, user="bob")
    assert gone.error_code == "authorization_required"
    still = await tether.call_tool("personal", "whoami", {}, user="alice")
    assert still.structured["sub"] == "alice"

"""Refresh, revocation and re-authorization end to end (RFR-*, REV-*, TOK-6).

Uses the session's opaque-token peers: oidc-provider can introspect (and revoke) opaque
access tokens, and its refresh tokens are always opaque, so every claim about a token's
life is checked at the AS itself by RFC 7662 introspection.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest

from hub.conftest import (
    FakeClock,
    MakeTether,
    as_requests,
    connect,
    introspect,
    mcp_status,
    oauth_server,
    refresh_grant,
    secret,
    stored,
    whoami,
)
from peers.fixture import AuthServer, Peers
from tether.hub.tether import Tether
from tether.store.base import Connection

pytestmark = pytest.mark.realservers


def token_posts(auth: AuthServer) -> int:
    """How many token requests the AS has logged so far."""
    return len(as_requests(auth, "POST", "/token"))


async def settled_token_posts(auth: AuthServer) -> int:
    """The token request count once every earlier request is in the AS's log.

    The log is written after each answer, so it may lag. A marker request made now is
    logged after every request that was answered before it: once its line is in, the
    count is final for everything before this call (30 s is only a hang guard).
    """
    marker = f"settled-{uuid.uuid4().hex}"
    await asyncio.to_thread(
        auth.get_json, f"/.well-known/openid-configuration?{marker}"
    )
    deadline = time.monotonic() + 30
    while marker not in auth.log():
        assert time.monotonic() < deadline, "the AS never logged the marker request"
        await asyncio.sleep(0.01)
    return token_posts(auth)


async def client_of(
    tether: Tether, server_id: str, issuer: str
) -> tuple[str, str | None, str]:
    """The connection's client: id, secret, token endpoint auth method."""
    registration = await tether.stores.registrations.get(server_id, issuer)
    assert registration is not None
    client_secret = registration.client_secret
    return (
        registration.client_id,
        client_secret.get_secret_value() if client_secret is not None else None,
        registration.auth_method,
    )


async def test_refresh_rotates_and_old_refresh_token_is_rejected_rfr4(
    make_tether: MakeTether, opaque_peers: Peers
) -> None:
    """RFR-4: after a refresh the new refresh token works and the old one is refused.

    The new pair is stored atomically (TOK-6: the version moves on), the new access token
    is accepted by the MCP server, and a refresh_token grant with the old refresh token
    posted straight to the AS draws ``invalid_grant``.
    """
    auth = opaque_peers.auth_server
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(opaque_peers), actor="admin")
    await connect(tether, server.name)
    before = await stored(tether, server.id)
    old_refresh = secret(before.refresh_token)

    info = await tether.refresh(server.name)

    assert info.status == "connected"
    after = await stored(tether, server.id)
    assert after.version > before.version
    new_refresh = secret(after.refresh_token)
    assert new_refresh != old_refresh
    assert secret(after.access_token) != secret(before.access_token)
    assert introspect(auth, new_refresh)["active"] is True
    assert introspect(auth, old_refresh)["active"] is False
    assert whoami(opaque_peers.mcp, secret(after.access_token))["sub"] == "test-user"

    # the new refresh token works (through Tether once more) ...
    await tether.refresh(server.name)
    latest = await stored(tether, server.id)
    assert secret(latest.refresh_token) not in (old_refresh, new_refresh)
    # ... and the old one is dead at the AS
    client_id, client_secret, method = await client_of(tether, server.id, auth.issuer)
    resp = refresh_grant(
        auth,
        old_refresh,
        client_id=client_id,
        client_secret=client_secret,
        method=method,
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "invalid_grant"


async def test_concurrent_refresh_is_single_flight_rfr5(
    make_tether: MakeTether, opaque_peers: Peers
) -> None:
    """RFR-5: ten concurrent refreshes of one stale connection → one token request.

    Five callers pass the connection they saw (``refresh(stale=...)``) and five ask for a
    usable connection after the access token went stale (``usable()``, RFR-2); all get
    the same new access token and the AS sees exactly one refresh.
    """
    auth = opaque_peers.auth_server
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    server = await tether.servers.create(oauth_server(opaque_peers), actor="admin")
    await connect(tether, server.name)
    stale = await stored(tether, server.id)
    assert stale.expires_at is not None
    clock.advance(stale.expires_at - clock.now() - timedelta(seconds=30))
    assert tether.connections.needs_refresh(stale)
    posts_before = await settled_token_posts(auth)

    async def by_refresh() -> Connection:
        return await tether.connections.refresh(server, "shared", stale=stale)

    async def by_usable() -> Connection:
        return await tether.connections.usable(server, "shared")

    results = await asyncio.gather(
        *(by_refresh() if i % 2 else by_usable() for i in range(10))
    )

    tokens = {secret(conn.access_token) for conn in results}
    assert len(tokens) == 1
    (new_access,) = tokens
    assert new_access != secret(stale.access_token)
    assert {secret(conn.refresh_token) for conn in results} == {
        secret((await stored(tether, server.id)).refresh_token)
    }
    # one refresh for ten callers, and none still on its way when they had returned
    assert await settled_token_posts(auth) == posts_before + 1
    assert (await stored(tether, server.id)).version == stale.version + 1
    assert whoami(opaque_peers.mcp, new_access)["sub"] == "test-user"


async def test_disconnect_revokes_at_the_as_rev1_rev5(
    make_tether: MakeTether, opaque_peers: Peers
) -> None:
    """REV-1…REV-5: disconnect revokes refresh then access token, clears, audits.

    Introspection shows both tokens inactive afterwards, the MCP server refuses the old
    access token, nothing is left locally and a ``connection.disconnect`` event records
    the outcome.
    """
    auth = opaque_peers.auth_server
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(opaque_peers), actor="admin")
    await connect(tether, server.name)
    conn = await stored(tether, server.id)
    access, refresh = secret(conn.access_token), secret(conn.refresh_token)
    assert introspect(auth, access)["active"] is True
    assert introspect(auth, refresh)["active"] is True
    assert mcp_status(opaque_peers.mcp, access) == 200

    outcomes = await tether.disconnect(server.name, user="alice")

    assert outcomes == ["refresh_token revoked", "access_token revoked"]  # REV-3 order
    assert introspect(auth, refresh) == {"active": False}
    assert introspect(auth, access) == {"active": False}
    assert mcp_status(opaque_peers.mcp, access) == 401
    after = await stored(tether, server.id)
    assert after.status == "disconnected"
    assert after.access_token is None
    assert after.refresh_token is None
    assert after.expires_at is None
    assert after.scopes == ()
    info = await tether.connection(server.name)
    assert info.status == "disconnected"
    assert not info.has_refresh_token
    events = [e for e in await tether.audit(server_ref=server.name)]
    (event,) = [e for e in events if e.action == "connection.disconnect"]
    assert event.actor == "alice"
    assert event.target_id == f"{server.id}:shared"
    assert event.detail is not None
    assert "refresh_token revoked" in event.detail
    assert "access_token revoked" in event.detail
    assert access not in repr(events)
    assert refresh not in repr(events)


@pytest.mark.parametrize(
    "changes",
    [
        {"oauth": {"scopes": "mcp:tools mcp:read"}},
        {"url": "http://127.0.0.1:9/mcp"},
    ],
    ids=["scopes", "url"],
)
async def test_config_change_clears_and_revokes_grant_rev(
    make_tether: MakeTether, opaque_peers: Peers, changes: dict[str, object]
) -> None:
    """REAUTH triggers (G-29, REV intro): a scope or URL change revokes and clears.

    The connection turns ``disconnected`` with the reason, its tokens are gone locally
    and inactive at the AS, the dynamic registration is forgotten, and the audit names
    the trigger. After a scope change a new connect gets the new scopes.
    """
    auth = opaque_peers.auth_server
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(opaque_peers), actor="admin")
    await connect(tether, server.name)
    conn = await stored(tether, server.id)
    access, refresh = secret(conn.access_token), secret(conn.refresh_token)

    await tether.servers.update(server.name, changes, actor="admin")

    after = await stored(tether, server.id)
    assert after.status == "disconnected"
    assert after.access_token is None
    assert after.refresh_token is None
    assert after.last_error is not None
    assert "configuration changed" in after.last_error
    assert introspect(auth, refresh) == {"active": False}
    assert introspect(auth, access) == {"active": False}
    assert await tether.stores.registrations.get(server.id, auth.issuer) is None
    assert await tether.stores.discovery.get(server.id) is None
    actions = [e.action for e in await tether.audit(server_ref=server.name)]
    assert actions[:2] == ["connection.disconnect", "server.update"]
    (update,) = [
        e
        for e in await tether.audit(server_ref=server.name)
        if e.action == "server.update"
    ]
    assert update.detail is not None
    assert ("url" if "url" in changes else "oauth.scopes") in update.detail

    if "url" not in changes:
        info = await connect(tether, server.name)
        assert set(info.scopes) == {"mcp:tools", "mcp:read"}

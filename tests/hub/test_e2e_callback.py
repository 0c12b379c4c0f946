"""The callback and the metadata checks end to end (CB-*, AUTHZ-2, AUTHZ-4, ASM-4).

Every refusal must leave a previously working connection exactly as it was and must not
send the authorization code to any token endpoint.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from hub.conftest import (
    FakeClock,
    MakeTether,
    as_requests,
    authorize,
    connect,
    oauth_server,
    stored,
)
from peers.fixture import AuthServer, MCPServer
from peers.plugin import PeerFactory
from tether.errors import CallbackRejected, DiscoveryError
from tether.hub.tether import Tether

pytestmark = pytest.mark.realservers


async def connected(tether: Tether, mcp: MCPServer) -> str:
    """Create a server for ``mcp`` and connect it; returns its id."""
    server = await tether.servers.create(oauth_server(mcp), actor="admin")
    await connect(tether, server.name)
    return server.id


async def test_replayed_state_rejected_cb1(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    """CB-1/AUTHZ-4: a callback whose state was already used is refused; nothing changes."""
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(mcp_server), actor="admin")
    params = await authorize(tether, server.name)
    await tether.complete(params, user="admin")
    before = await stored(tether, server.id)
    posts = len(as_requests(auth_server, "POST", "/token"))

    with pytest.raises(CallbackRejected) as caught:
        await tether.complete(params, user="admin")

    assert caught.value.step == "callback"
    assert await stored(tether, server.id) == before
    assert len(as_requests(auth_server, "POST", "/token")) == posts


async def test_expired_state_rejected_authz4(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    """AUTHZ-4/AUTHZ-5: a callback after the pending authorization lapsed is refused.

    The legit connection made before is unchanged and the code is never exchanged.
    """
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    server_id = await connected(tether, mcp_server)
    before = await stored(tether, server_id)
    started = await tether.connect("demo", user="admin")
    assert started.expires_at == clock.now() + timedelta(minutes=10)
    params = await authorize(tether, "demo")  # a second, fresh pending authorization
    posts = len(as_requests(auth_server, "POST", "/token"))

    clock.advance(timedelta(minutes=10, seconds=1))
    with pytest.raises(CallbackRejected) as caught:
        await tether.complete(params, user="admin")

    assert caught.value.step == "callback"
    assert await stored(tether, server_id) == before
    assert len(as_requests(auth_server, "POST", "/token")) == posts


async def test_state_of_another_user_rejected_cb1(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    """CB-1: a callback completed by another user than the one who started is refused.

    The legit connection is unchanged, no code exchange happens, and the state is spent
    (taken once), so it cannot be completed afterwards either.
    """
    tether = await make_tether()
    server_id = await connected(tether, mcp_server)
    before = await stored(tether, server_id)
    params = await authorize(tether, "demo", user="admin")
    posts = len(as_requests(auth_server, "POST", "/token"))

    with pytest.raises(CallbackRejected) as caught:
        await tether.complete(params, user="mallory")
    assert "another user" in caught.value.message
    with pytest.raises(CallbackRejected):
        await tether.complete(params, user="admin")

    assert await stored(tether, server_id) == before
    assert len(as_requests(auth_server, "POST", "/token")) == posts


async def test_iss_mismatch_rejected_before_code_exchange_cb2_cb4(
    tmp_peers: PeerFactory, make_tether: MakeTether
) -> None:
    """CB-2…CB-4: a wrong RFC 9207 ``iss`` is refused and the code never exchanged."""
    peers = tmp_peers.peers(as_env={"AS_WRONG_ISS": "1"})
    auth = peers.auth_server
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(peers), actor="admin")
    params = await authorize(tether, server.name)
    assert params["iss"] == f"{auth.issuer}/wrong"
    assert params["code"]

    with pytest.raises(CallbackRejected) as caught:
        await tether.complete(params, user="admin")

    assert caught.value.server == server.name
    assert caught.value.step == "callback"
    assert "iss" in caught.value.message
    assert caught.value.details["url"] == auth.issuer
    assert as_requests(auth, "POST", "/token") == []
    assert await tether.stores.connections.get(server.id, "shared") is None
    assert (await tether.connection(server.name)).status == "disconnected"


async def test_metadata_issuer_mismatch_refused_at_start_asm4(
    tmp_peers: PeerFactory, make_tether: MakeTether
) -> None:
    """ASM-4: AS metadata whose ``issuer`` differs from the PRM's is never used.

    The connect fails at its start with a DiscoveryError naming the server and both
    issuers; no registration is attempted and nothing is stored.
    """
    peers = tmp_peers.peers(as_env={"AS_WRONG_ISSUER": "1"})
    auth = peers.auth_server
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(peers), actor="admin")

    with pytest.raises(DiscoveryError) as caught:
        await tether.connect(server.name, user="admin")

    error = caught.value
    assert error.server == server.name
    assert error.step == "discovery"
    assert auth.issuer in str(error)
    assert f"{auth.issuer}/wrong" in str(error)
    assert as_requests(auth, "POST", "/reg") == []
    assert await tether.stores.discovery.get(server.id) is None
    assert await tether.stores.registrations.get(server.id, auth.issuer) is None


async def test_missing_pkce_metadata_refused_unless_allowed_authz2(
    tmp_peers: PeerFactory, make_tether: MakeTether
) -> None:
    """AUTHZ-2 + known disagreements #1: no ``code_challenge_methods_supported``.

    Refused at the start with an error naming the override; with
    ``allow_missing_pkce_metadata`` the connect works and still sends S256 (AUTHZ-1).
    """
    peers = tmp_peers.peers(as_env={"AS_NO_PKCE_METADATA": "1"})
    assert "code_challenge_methods_supported" not in peers.auth_server.metadata()
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(peers), actor="admin")

    with pytest.raises(DiscoveryError) as caught:
        await tether.connect(server.name, user="admin")
    assert caught.value.server == server.name
    assert caught.value.step == "discovery"
    assert "allow missing PKCE metadata" in str(caught.value)
    assert as_requests(peers.auth_server, "POST", "/reg") == []

    await tether.servers.update(
        server.name, {"oauth": {"allow_missing_pkce_metadata": True}}, actor="admin"
    )
    started = await tether.connect(server.name, user="admin")
    query = parse_qs(urlsplit(started.authorization_url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    info = await connect(tether, server.name)
    assert info.status == "connected"

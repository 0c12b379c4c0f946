"""Grant integrity against oidc-provider with refresh-token rotation (issue 7).

Every claim is checked at the authorization server itself: RFC 7662 introspection says
whether the refresh token Tether stored is the live one. Faults inside the refresh (a
writer racing it, a caller's deadline firing) are injected by wrapping the hub's real
fetcher, so the real AS rotates the grant in each case. The multi-process storm and the
kill -9 trials are in ``tests/grants/``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from hub.conftest import (
    POLICY,
    REDIRECT_URI,
    FakeClock,
    MakeTether,
    connect,
    introspect,
    oauth_server,
    secret,
    stored,
    whoami,
)
from peers.fixture import AuthServer, Peers
from peers.plugin import PeerFactory
from tether.errors import TetherError
from tether.hub.tether import Tether
from tether.net.browser import follow_authorization
from tether.net.fetch import HttpResponse
from tether.store.crypto import KeyRing

pytestmark = pytest.mark.realservers

AfterToken = Callable[[], Awaitable[None]]
OTHER_REDIRECT = "http://127.0.0.1:8470/callback"


def after_token_answer(tether: Tether, hook: AfterToken) -> None:
    """Run ``hook`` once, after the AS answered a token request, before Tether goes on."""
    real = tether.fetcher.request
    fired = False

    async def request(method: str, url: str, **kwargs: Any) -> HttpResponse:
        nonlocal fired
        response = await real(method, url, **kwargs)
        if kwargs.get("step") == "token" and not fired:
            fired = True
            await hook()
        return response

    tether.fetcher.request = request  # type: ignore[method-assign]


async def expire(tether: Tether, clock: FakeClock, server_id: str) -> None:
    conn = await stored(tether, server_id)
    assert conn.expires_at is not None
    clock.advance(conn.expires_at - clock.now() + timedelta(seconds=1))


async def test_a_writer_racing_the_refresh_keeps_the_rotated_token(
    make_tether: MakeTether, opaque_peers: Peers
) -> None:
    auth = opaque_peers.auth_server
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    server = await tether.servers.create(oauth_server(opaque_peers), actor="admin")
    await connect(tether, server.name)
    old_refresh = secret((await stored(tether, server.id)).refresh_token)
    await expire(tether, clock, server.id)

    async def step_up() -> None:  # lands between the AS's answer and our write
        await tether.connections.record_step_up(server, "shared", ("mcp:admin",))

    after_token_answer(tether, step_up)
    await tether.refresh(server.name)

    conn = await stored(tether, server.id)
    assert conn.status == "connected"
    assert "mcp:admin" in conn.required_scopes
    new_refresh = secret(conn.refresh_token)
    assert new_refresh != old_refresh
    assert introspect(auth, new_refresh)["active"] is True  # the grant lives on
    assert introspect(auth, old_refresh)["active"] is False


async def test_a_deadline_firing_mid_refresh_keeps_the_new_tokens(
    make_tether: MakeTether, opaque_peers: Peers
) -> None:
    auth = opaque_peers.auth_server
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    server = await tether.servers.create(oauth_server(opaque_peers), actor="admin")
    await connect(tether, server.name)
    old_refresh = secret((await stored(tether, server.id)).refresh_token)
    await expire(tether, clock, server.id)
    answered, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        answered.set()
        await release.wait()

    after_token_answer(tether, hold)
    caller = asyncio.create_task(tether.call_tool("demo", "echo", {"text": "x"}))
    await answered.wait()  # the AS has rotated the refresh token now
    caller.cancel()  # the tool call's deadline
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()

    result = await tether.call_tool("demo", "echo", {"text": "y"})
    assert not result.is_error, result.text
    new_refresh = secret((await stored(tether, server.id)).refresh_token)
    assert new_refresh != old_refresh
    assert introspect(auth, new_refresh)["active"] is True


async def test_a_plain_403_leaves_a_shared_connection_connected(
    make_tether: MakeTether, auth_server: AuthServer, tmp_peers: PeerFactory
) -> None:
    """Issue 7 item 6: HTTP 403 without insufficient_scope refuses one call only."""
    mcp = tmp_peers.mcp_server(auth_server, MCP_ERROR_HTTP_STATUS=403)
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(mcp), actor="admin")
    await connect(tether, server.name)
    before = await stored(tether, server.id)

    refused = await tether.call_tool("demo", "http_error", {}, user="bob")
    assert refused.is_error
    assert refused.error_code == "forbidden", refused

    after = await stored(tether, server.id)
    assert after.status == "connected"
    assert after.version == before.version  # nothing stored changed
    assert after.required_scopes == ()
    assert not (await tether.call_tool("demo", "echo", {"text": "x"})).is_error


async def test_an_abandoned_connect_never_touches_the_live_grant(
    make_tether: MakeTether, opaque_peers: Peers
) -> None:
    """Issue 7 item 10: a connect with another redirect URI registers a new client,
    which stays staged; the live grant keeps refreshing with its own client."""
    auth = opaque_peers.auth_server
    ring = KeyRing.generate()
    clock = FakeClock()
    app = await make_tether(key_ring=ring, clock=clock)
    server = await app.servers.create(oauth_server(opaque_peers), actor="admin")
    await connect(app, server.name)
    live = await stored(app, server.id)

    cli = await make_tether(key_ring=ring, redirect_uri=OTHER_REDIRECT)
    started = await cli.connect(server.name, user="admin")  # then abandoned
    assert f"client_id={live.client_id}" not in started.authorization_url

    await expire(app, clock, server.id)
    info = await app.refresh(server.name)
    assert info.status == "connected"
    refreshed = await stored(app, server.id)
    assert refreshed.client_id == live.client_id
    assert introspect(auth, secret(refreshed.refresh_token))["active"] is True


async def test_the_other_clients_connect_completes_and_takes_over(
    make_tether: MakeTether, opaque_peers: Peers
) -> None:
    """A staged client becomes the live one when its connect completes."""
    ring = KeyRing.generate()
    app = await make_tether(key_ring=ring)
    server = await app.servers.create(oauth_server(opaque_peers), actor="admin")
    await connect(app, server.name)
    first_client = (await stored(app, server.id)).client_id

    other = await make_tether(key_ring=ring, redirect_uri=OTHER_REDIRECT)
    started = await other.connect(server.name, user="admin")
    params = await follow_authorization(
        started.authorization_url, OTHER_REDIRECT, POLICY
    )
    info = await other.complete(params, user="admin")
    assert info.status == "connected"
    conn = await stored(other, server.id)
    assert conn.client_id != first_client
    issuer = opaque_peers.auth_server.issuer
    live = await other.stores.registrations.get(server.id, issuer)
    assert live is not None
    assert live.client_id == conn.client_id
    assert not (await other.call_tool("demo", "echo", {"text": "x"})).is_error


async def test_a_url_change_whose_clean_up_died_never_sends_the_old_token(
    make_tether: MakeTether,
    auth_server: AuthServer,
    tmp_peers: PeerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11 item 3: the change and the grants' death are one write.

    The revocation and clean-up after the change fail (as if the process died right
    after saving it); the old bearer token still never reaches the new URL, and the
    first use revokes and clears it.
    """
    old = tmp_peers.mcp_server(auth_server)
    # the new server would even accept the old server's tokens (same audience), so
    # only Tether can keep the old token away from it
    new = tmp_peers.mcp_server(auth_server, MCP_AUDIENCE=old.resource)
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(old), actor="admin")
    await connect(tether, server.name)
    old_access = secret((await stored(tether, server.id)).access_token)

    async def died(*_: Any, **__: Any) -> None:
        raise RuntimeError("killed before the clean-up")

    monkeypatch.setattr(tether.connections, "clear_server", died)
    with pytest.raises(RuntimeError):
        await tether.servers.update(server.name, {"url": new.url}, actor="admin")
    monkeypatch.undo()

    result = await tether.call_tool("demo", "echo", {"text": "x"})
    assert result.is_error
    assert result.error_code == "authorization_required", result
    assert new.calls() == []  # nothing authenticated reached the new server
    conn = await stored(tether, server.id)
    assert conn.access_token is None
    assert conn.status == "disconnected"
    assert whoami(new, old_access)["sub"] == "test-user"  # it would have worked


async def test_a_failed_connect_leaves_the_live_discovery_alone(
    make_tether: MakeTether, opaque_peers: Peers
) -> None:
    """Issue 11 item 4: a connect whose AS metadata briefly names a refused token
    endpoint fails, and the live grant keeps refreshing with the stored discovery."""
    auth = opaque_peers.auth_server
    clock = FakeClock()
    tether = await make_tether(clock=clock)
    server = await tether.servers.create(oauth_server(opaque_peers), actor="admin")
    await connect(tether, server.name)
    live = await tether.stores.discovery.get(server.id)
    assert live is not None

    real = tether.fetcher.request

    async def broken_metadata(method: str, url: str, **kwargs: Any) -> HttpResponse:
        response = await real(method, url, **kwargs)
        if url.startswith(auth.metadata_url):
            body = json.loads(response.body)
            body["token_endpoint"] = "http://127.0.0.1:9/token"  # refused
            response = dataclasses.replace(response, body=json.dumps(body).encode())
        return response

    tether.fetcher.request = broken_metadata  # type: ignore[method-assign]
    tether.connections.discoverer.forget(server.id)  # no cached discovery either
    started = await tether.connect(server.name, user="admin")
    params = await follow_authorization(started.authorization_url, REDIRECT_URI, POLICY)
    with pytest.raises(TetherError):
        await tether.complete(params, user="admin")
    tether.fetcher.request = real  # type: ignore[method-assign]

    assert await tether.stores.discovery.get(server.id) == live
    await expire(tether, clock, server.id)
    info = await tether.refresh(server.name)
    assert info.status == "connected"
    assert introspect(auth, secret((await stored(tether, server.id)).refresh_token))[
        "active"
    ]

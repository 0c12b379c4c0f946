"""Client registration end to end (REG-*, TOK-3) against oidc-provider and an SDK MCP server.

oidc-provider enforces each static client's registered ``token_endpoint_auth_method``:
a token request authenticated any other way is refused with ``invalid_client``. So a
connect that succeeds with ``static-basic`` / ``static-post`` / ``static-public`` proves
Tether used exactly that method, and the MCP server's ``whoami`` proves the token it
stored is the one the AS minted for that client.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from hub.conftest import (
    FetchSpy,
    MakeTether,
    SentRequest,
    as_requests,
    authorize,
    connect,
    oauth_server,
    refresh_grant,
    secret,
    stored,
    whoami,
)
from peers.fixture import AuthServer, MCPServer
from tether.errors import InvalidClient

pytestmark = pytest.mark.realservers


async def test_dynamic_registration_connect_reg5_reg6(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    """REG-5/REG-6/REG-10: DCR once at the AS, then a connection whose token works."""
    tether = await make_tether()
    server = await tether.servers.create(oauth_server(mcp_server), actor="admin")
    registrations_before = len(as_requests(auth_server, "POST", "/reg"))

    info = await connect(tether, server.name)

    assert info.status == "connected"
    assert info.has_refresh_token
    assert info.issuer == auth_server.issuer
    registration = await tether.stores.registrations.get(server.id, auth_server.issuer)
    assert registration is not None
    assert registration.source == "dynamic"
    assert info.client_id == registration.client_id
    conn = await stored(tether, server.id)
    who = whoami(mcp_server, secret(conn.access_token))
    assert who["client_id"] == registration.client_id
    assert who["aud"] == mcp_server.url  # RES-1: audience-restricted to this server

    # REG-10: a second connect reuses the registration (no new POST /reg)
    await connect(tether, server.name)
    assert len(as_requests(auth_server, "POST", "/reg")) == registrations_before + 1


@pytest.mark.parametrize(
    ("client_id", "client_secret", "method"),
    [
        ("static-basic", "static-basic-secret", "client_secret_basic"),
        ("static-post", "static-post-secret", "client_secret_post"),
        ("static-public", None, "none"),
    ],
)
async def test_manual_client_auth_methods_reg3_tok3(
    make_tether: MakeTether,
    auth_server: AuthServer,
    mcp_server: MCPServer,
    client_id: str,
    client_secret: str | None,
    method: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """REG-3/TOK-3: a manual client with each method connects, refreshes and disconnects.

    The AS accepts a token request for that client only with its registered method, so
    every successful code exchange and refresh proves the method Tether used.
    """
    tether = await make_tether()
    oauth: dict[str, Any] = {
        "registration": "manual",
        "client_id": client_id,
        "token_auth_method": method,
    }
    if client_secret is not None:
        credential = await tether.credentials.create(
            f"{client_id}-secret", client_secret, actor="admin"
        )
        oauth["client_secret_credential_id"] = credential.id
    server = await tether.servers.create(
        oauth_server(mcp_server, **oauth), actor="admin"
    )
    registrations_before = len(as_requests(auth_server, "POST", "/reg"))
    spy = FetchSpy(tether, monkeypatch)

    info = await connect(tether, server.name)

    assert info.client_id == client_id
    registration = await tether.stores.registrations.get(server.id, auth_server.issuer)
    assert registration is not None
    assert (registration.source, registration.auth_method) == ("manual", method)
    first = await stored(tether, server.id)
    assert whoami(mcp_server, secret(first.access_token))["client_id"] == client_id

    # the refresh grant authenticates the same way (RFR-3)
    refreshed = await tether.refresh(server.name)
    assert refreshed.status == "connected"
    second = await stored(tether, server.id)
    assert secret(second.access_token) != secret(first.access_token)
    assert whoami(mcp_server, secret(second.access_token))["client_id"] == client_id

    # revocation too (REV-2): the refresh token is dead at the AS afterwards
    outcomes = await tether.disconnect(server.name, user="admin")
    # REV-3: refresh token first; oidc-provider cannot revoke its JWT access tokens
    assert outcomes[0] == "refresh_token revoked"
    assert outcomes[1].startswith("access_token not revoked: "), outcomes
    assert (
        refresh_after_disconnect(auth_server, secret(second.refresh_token), client_id)
        == "invalid_grant"
    )
    # every token and revocation request authenticated with exactly that method
    sent = spy.steps("token") + spy.steps("revocation")
    assert len(sent) == 4, sent  # code, refresh, revoke refresh token, revoke access
    for request in sent:
        assert_client_auth(request, client_id, client_secret, method)
    # a manual client never registers dynamically
    assert len(as_requests(auth_server, "POST", "/reg")) == registrations_before


def assert_client_auth(
    request: SentRequest, client_id: str, client_secret: str | None, method: str
) -> None:
    """The request carries the client authentication of ``method`` and no other."""
    header = request.headers.get("authorization")
    if method == "client_secret_basic":
        assert client_secret is not None
        expected = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        assert header == f"Basic {expected}"
        assert "client_secret" not in request.form
    elif method == "client_secret_post":
        assert header is None
        assert request.form["client_id"] == client_id
        assert request.form["client_secret"] == client_secret
    else:
        assert header is None
        assert request.form["client_id"] == client_id
        assert "client_secret" not in request.form


def refresh_after_disconnect(auth: AuthServer, token: str, client_id: str) -> str:
    """The ``error`` of a direct refresh grant with a revoked token."""
    secrets_by_client = {
        "static-basic": ("static-basic-secret", "client_secret_basic"),
        "static-post": ("static-post-secret", "client_secret_post"),
        "static-public": (None, "none"),
    }
    client_secret, method = secrets_by_client[client_id]
    resp = refresh_grant(
        auth, token, client_id=client_id, client_secret=client_secret, method=method
    )
    assert resp.status_code == 400, resp.text
    error: str = resp.json()["error"]
    return error


async def test_confidential_client_without_secret_is_refused_tok3(
    make_tether: MakeTether, auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    """TOK-3 control: ``static-basic`` used as a public client (``none``) is refused.

    Shows the AS checks client authentication (so the passing cases above are
    meaningful) and that the failure is a typed InvalidClient naming the server and the
    token step; the connection records the error and holds no tokens.
    """
    tether = await make_tether()
    server = await tether.servers.create(
        oauth_server(
            mcp_server,
            registration="manual",
            client_id="static-basic",
            token_auth_method="none",
        ),
        actor="admin",
    )
    params = await authorize(tether, server.name)
    with pytest.raises(InvalidClient) as caught:
        await tether.complete(params, user="admin")
    assert caught.value.server == server.name  # GEN-4: the admin's server name
    assert caught.value.step == "token"
    assert caught.value.details["url"] == auth_server.metadata()["token_endpoint"]
    conn = await stored(tether, server.id)
    assert conn.access_token is None
    assert conn.refresh_token is None
    assert conn.status == "error"
    assert conn.last_error_code == InvalidClient.code

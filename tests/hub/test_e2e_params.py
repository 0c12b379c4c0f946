"""Custom OAuth parameters and ``require_refresh_token`` end to end (AUTHZ-6, RES-1, RFR-7).

Known disagreements #4 and #7: admins may add provider-only parameters (``audience``)
and remove defaults (``resource`` with ``null``), but never touch the parameters Tether
controls for security.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from hub.conftest import (
    FetchSpy,
    MakeTether,
    connect,
    introspect,
    oauth_server,
    stored,
    whoami,
)
from peers.fixture import AuthServer, MCPServer
from peers.plugin import PeerFactory
from tether.errors import ConfigurationError, ValidationFailed

pytestmark = pytest.mark.realservers

AUDIENCE = "https://api.example.test"


async def test_audience_added_to_authorization_and_token_requests_authz6(
    make_tether: MakeTether,
    auth_server: AuthServer,
    mcp_server: MCPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Known disagreements #7: ``audience`` goes on the URL and the code exchange.

    The core parameters stay Tether's own (AUTHZ-6) and the connection still works.
    """
    tether = await make_tether()
    server = await tether.servers.create(
        oauth_server(
            mcp_server,
            authorization_params={"audience": AUDIENCE},
            token_params={"audience": AUDIENCE},
        ),
        actor="admin",
    )
    spy = FetchSpy(tether, monkeypatch)
    started = await tether.connect(server.name, user="admin")
    query = parse_qs(urlsplit(started.authorization_url).query)
    assert query["audience"] == [AUDIENCE]
    assert query["resource"] == [mcp_server.url]  # RES-1 default kept
    assert query["state"] == [started.state]
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"]

    await connect(tether, server.name)
    (exchange,) = spy.steps("token")
    assert exchange.form["grant_type"] == "authorization_code"
    assert exchange.form["audience"] == AUDIENCE
    assert exchange.form["resource"] == mcp_server.url
    conn = await stored(tether, server.id)
    assert conn.access_token is not None
    assert whoami(mcp_server, conn.access_token.get_secret_value())["sub"]


async def test_resource_removed_with_null_res1_override(
    make_tether: MakeTether,
    auth_server: AuthServer,
    mcp_server: MCPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Known disagreements #4: ``resource: null`` drops it from the URL and the exchange.

    Also from the refresh request (RFR-3 with the override): the ``token_params`` apply to
    every token request.
    """
    tether = await make_tether()
    server = await tether.servers.create(
        oauth_server(
            mcp_server,
            authorization_params={"resource": None},
            token_params={"resource": None},
        ),
        actor="admin",
    )
    spy = FetchSpy(tether, monkeypatch)
    started = await tether.connect(server.name, user="admin")
    query = parse_qs(urlsplit(started.authorization_url).query)
    assert "resource" not in query
    assert query["client_id"]  # the rest of the request is intact

    info = await connect(tether, server.name)
    assert info.status == "connected"
    await tether.refresh(server.name)
    exchange, refresh = spy.steps("token")
    assert exchange.form["grant_type"] == "authorization_code"
    assert refresh.form["grant_type"] == "refresh_token"
    assert "resource" not in exchange.form
    assert "resource" not in refresh.form


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("authorization_params", "state"),
        ("authorization_params", "client_id"),
        ("authorization_params", "redirect_uri"),
        ("authorization_params", "code_challenge"),
        ("authorization_params", "code_challenge_method"),
        ("authorization_params", "response_type"),
        ("token_params", "grant_type"),
        ("token_params", "code_verifier"),
        ("token_params", "client_secret"),
        ("token_params", "refresh_token"),
    ],
)
async def test_protected_params_rejected_on_save_authz6(
    make_tether: MakeTether, mcp_server: MCPServer, field: str, name: str
) -> None:
    """AUTHZ-6: setting or removing a protected parameter is a ValidationFailed.

    On create nothing is stored; on update the stored server is unchanged.
    """
    tether = await make_tether()
    for value in ("x", None):
        spec = oauth_server(mcp_server)
        spec["oauth"] = {field: {name: value}}
        with pytest.raises(ValidationFailed) as caught:
            await tether.servers.create(spec, actor="admin")
        fields = caught.value.details["fields"]
        assert list(fields) == [f"oauth.{field}"]
        assert name in fields[f"oauth.{field}"]
        assert name in caught.value.message
    assert await tether.servers.list() == []

    server = await tether.servers.create(oauth_server(mcp_server), actor="admin")
    with pytest.raises(ValidationFailed):
        await tether.servers.update(
            server.name, {"oauth": {field: {name: "x"}}}, actor="admin"
        )
    assert await tether.servers.get(server.name) == server


async def test_require_refresh_token_fails_clearly_and_stores_nothing_rfr7(
    tmp_peers: PeerFactory, make_tether: MakeTether, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFR-7 + ``require_refresh_token``: no refresh token granted → a clear error.

    The AS issues refresh tokens only with ``offline_access`` (AS_REFRESH_ALWAYS=0) and
    does not advertise that scope (AS_OFFLINE_ACCESS=0), so Tether does not ask for it
    (SCP-4); the connection stays unconnected, records the error and holds no token at
    all, and the access token the AS did issue is revoked (best effort) so it does not
    outlive the failed connect.
    """
    peers = tmp_peers.peers(
        as_env={
            "AS_REFRESH_ALWAYS": "0",
            "AS_OFFLINE_ACCESS": "0",
            "AS_ACCESS_TOKEN_FORMAT": "opaque",
        },
        mcp_env={"MCP_TOKEN_VALIDATION": "introspection"},
    )
    tether = await make_tether()
    server = await tether.servers.create(
        oauth_server(peers, require_refresh_token=True), actor="admin"
    )
    spy = FetchSpy(tether, monkeypatch)
    with pytest.raises(ConfigurationError) as caught:
        await connect(tether, server.name)
    assert "refresh token" in caught.value.message
    assert caught.value.server == server.name
    assert caught.value.step == "token"
    assert caught.value.hint is not None
    assert "offline_access" in caught.value.hint
    assert caught.value.details["revocation"] == "revoked"
    (revoked,) = spy.steps("revocation")
    assert revoked.form["token_type_hint"] == "access_token"
    assert introspect(peers.auth_server, revoked.form["token"])["active"] is False

    conn = await stored(tether, server.id)
    assert conn.status == "error"
    assert conn.access_token is None
    assert conn.refresh_token is None
    assert conn.expires_at is None
    assert conn.last_error_code == ConfigurationError.code
    info = await tether.connection(server.name)
    assert info.status == "error"
    assert not info.has_refresh_token

    # control: the same AS connects fine without the requirement (no refresh token)
    await tether.servers.update(
        server.name, {"oauth": {"require_refresh_token": False}}, actor="admin"
    )
    info = await connect(tether, server.name)
    assert info.status == "connected"
    assert not info.has_refresh_token


async def test_offline_access_requested_when_the_as_lists_it_scp4(
    tmp_peers: PeerFactory, make_tether: MakeTether
) -> None:
    """SCP-4/SCP-5: the AS advertises ``offline_access`` and grants refresh tokens only
    for it (AS_REFRESH_ALWAYS=0): Tether asks for it with ``prompt=consent``, so the
    connection gets a refresh token. An admin's scope list is sent as is."""
    peers = tmp_peers.peers(as_env={"AS_REFRESH_ALWAYS": "0"})
    assert "offline_access" in peers.auth_server.metadata()["scopes_supported"]
    tether = await make_tether()
    server = await tether.servers.create(
        oauth_server(peers, require_refresh_token=True), actor="admin"
    )
    started = await tether.connect(server.name, user="admin")
    query = parse_qs(urlsplit(started.authorization_url).query)
    assert "offline_access" in query["scope"][0].split()
    assert query["prompt"] == ["consent"]
    info = await connect(tether, server.name)
    assert info.has_refresh_token

    await tether.servers.update(
        server.name,
        {"oauth": {"scopes": "mcp:tools", "require_refresh_token": False}},
        actor="admin",
    )
    started = await tether.connect(server.name, user="admin")
    query = parse_qs(urlsplit(started.authorization_url).query)
    assert query["scope"] == ["mcp:tools"]
    assert "prompt" not in query

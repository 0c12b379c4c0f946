"""Self-test of the loopback peers, driven with plain httpx2 (no Tether code)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from .fixture import AuthServer, MCPServer

if TYPE_CHECKING:
    from .plugin import PeerFactory

pytest_plugins = [f"{__package__}.plugin"]
pytestmark = pytest.mark.realservers

ACCEPT = "application/json, text/event-stream"


# ---------------------------------------------------------------- helpers


def http(peer: AuthServer | MCPServer | None = None) -> httpx2.Client:
    context = peer.ssl_context() if peer is not None else None
    return httpx2.Client(
        timeout=15.0, trust_env=False, verify=context if context is not None else True
    )


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize(
    client: httpx2.Client,
    auth: AuthServer,
    *,
    client_id: str,
    redirect_uri: str,
    resource: str,
    scope: str = "mcp:tools",
    challenge: str,
) -> dict[str, str]:
    """Follow the AS redirects (auto-approve mode) until it redirects to ``redirect_uri``."""
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": "st-" + secrets.token_hex(4),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": resource,
    }
    url = f"{auth.metadata()['authorization_endpoint']}?{urllib.parse.urlencode(query)}"
    for _ in range(10):
        resp = client.get(url)
        assert resp.status_code in (302, 303), (resp.status_code, resp.text[:500])
        url = urllib.parse.urljoin(url, resp.headers["location"])
        if url.startswith(redirect_uri):
            params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
            assert params.get("state") == query["state"]
            return params
    raise AssertionError("too many redirects")


@dataclass
class Tokens:
    access_token: str
    refresh_token: str | None
    body: dict[str, Any]


def token_request(
    client: httpx2.Client,
    auth: AuthServer,
    data: dict[str, str],
    *,
    client_id: str,
    secret: str | None,
    method: str,
) -> httpx2.Response:
    endpoint = auth.metadata()["token_endpoint"]
    form = dict(data)
    if method == "client_secret_basic":
        assert secret is not None
        return client.post(endpoint, data=form, auth=(client_id, secret))
    if method == "client_secret_post":
        assert secret is not None
        form.update(client_id=client_id, client_secret=secret)
    else:
        form["client_id"] = client_id
    return client.post(endpoint, data=form)


def login(
    auth: AuthServer,
    resource: str,
    *,
    client_id: str = "static-basic",
    secret: str | None = "static-basic-secret",
    method: str = "client_secret_basic",
    scope: str = "mcp:tools",
    port: int = 54321,
) -> Tokens:
    """The whole authorization-code flow with a static client."""
    redirect_uri = f"http://127.0.0.1:{port}/oauth/callback"
    verifier, challenge = pkce_pair()
    with http(auth) as client:
        params = authorize(
            client,
            auth,
            client_id=client_id,
            redirect_uri=redirect_uri,
            resource=resource,
            scope=scope,
            challenge=challenge,
        )
        assert params["iss"] == auth.issuer
        data = {
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "resource": resource,
        }
        resp = token_request(
            client, auth, data, client_id=client_id, secret=secret, method=method
        )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return Tokens(body["access_token"], body.get("refresh_token"), body)


def sse_messages(resp: httpx2.Response) -> list[dict[str, Any]]:
    """JSON-RPC messages of a JSON or SSE response body."""
    if resp.headers.get("content-type", "").startswith("application/json"):
        return [resp.json()]
    out: list[dict[str, Any]] = []
    for line in resp.text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            out.append(json.loads(line[5:]))
    return out


@dataclass
class Rpc:
    """A minimal Streamable HTTP client."""

    client: httpx2.Client
    url: str
    token: str | None = None
    session_id: str | None = None
    protocol_version: str | None = None
    next_id: int = 1
    extra_headers: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        headers = {
            "accept": ACCEPT,
            "content-type": "application/json",
            **self.extra_headers,
        }
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        if self.session_id:
            headers["mcp-session-id"] = self.session_id
        if self.protocol_version:
            headers["mcp-protocol-version"] = self.protocol_version
        return headers

    def post(
        self, method: str, params: dict[str, Any] | None = None, *, notify: bool = False
    ) -> httpx2.Response:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        if not notify:
            msg["id"] = self.next_id
            self.next_id += 1
        return self.client.post(self.url, json=msg, headers=self.headers())

    def request(
        self, method: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        resp = self.post(method, params)
        assert resp.status_code == 200, (resp.status_code, resp.headers, resp.text)
        final = [m for m in sse_messages(resp) if "id" in m]
        assert len(final) == 1, resp.text
        assert "result" in final[0], final[0]
        result: dict[str, Any] = final[0]["result"]
        return result

    def initialize(self, version: str = "2025-11-25") -> dict[str, Any]:
        params = {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "peers-test", "version": "0"},
        }
        resp = self.post("initialize", params)
        assert resp.status_code == 200, (resp.status_code, resp.text)
        self.session_id = resp.headers.get("mcp-session-id")
        result: dict[str, Any] = sse_messages(resp)[0]["result"]
        self.protocol_version = result["protocolVersion"]
        assert self.post("notifications/initialized", notify=True).status_code == 202
        return result

    def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments or {}})


def challenge_params(header: str) -> dict[str, str]:
    assert header.startswith("Bearer ")
    out: dict[str, str] = {}
    for part in header[len("Bearer ") :].split(", "):
        key, _, value = part.partition("=")
        out[key] = value.strip('"')
    return out


@pytest.fixture
def rpc_client() -> Iterator[httpx2.Client]:
    with http() as client:
        yield client


# ---------------------------------------------------------------- tests


def test_discovery_documents(auth_server: AuthServer, mcp_server: MCPServer) -> None:
    meta = auth_server.metadata()
    assert meta["issuer"] == auth_server.issuer
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert "offline_access" in meta["scopes_supported"]
    with http() as client:
        resp = client.post(
            mcp_server.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
        )
        assert resp.status_code == 401
        params = challenge_params(resp.headers["www-authenticate"])
        assert params == {"scope": "mcp:tools", "resource_metadata": mcp_server.prm_url}
        for url in (
            mcp_server.prm_url,
            mcp_server.base_url + "/.well-known/oauth-protected-resource",
        ):
            prm = client.get(url).json()
            assert prm["resource"] == mcp_server.url
            assert prm["authorization_servers"] == [auth_server.issuer]  # byte for byte
            assert prm["scopes_supported"] == ["mcp:tools", "mcp:admin"]


def test_dcr_flow_whoami_refresh_revoke_introspect(
    auth_server: AuthServer, mcp_server: MCPServer
) -> None:
    meta = auth_server.metadata()
    redirect_uri = "http://127.0.0.1:47001/oauth/callback"
    with http() as client:
        reg = client.post(
            meta["registration_endpoint"],
            json={
                "client_name": "peers self-test",
                "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic",
            },
        )
        assert reg.status_code == 201, reg.text
        client_id, secret = reg.json()["client_id"], reg.json()["client_secret"]
        verifier, challenge = pkce_pair()
        params = authorize(
            client,
            auth_server,
            client_id=client_id,
            redirect_uri=redirect_uri,
            resource=mcp_server.url,
            challenge=challenge,
        )
        assert params["iss"] == auth_server.issuer
        code = {
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "resource": mcp_server.url,
        }
        tok = token_request(
            client,
            auth_server,
            code,
            client_id=client_id,
            secret=secret,
            method="client_secret_basic",
        )
        assert tok.status_code == 200, tok.text
        access, refresh = tok.json()["access_token"], tok.json()["refresh_token"]
        assert tok.json()["scope"] == "mcp:tools"

        rpc = Rpc(client, mcp_server.url, token=access)
        init = rpc.initialize()
        assert init["protocolVersion"] == "2025-11-25"
        assert rpc.session_id
        assert init["capabilities"]["tools"]["listChanged"] is True
        who = rpc.call_tool("whoami")["structuredContent"]
        assert who["client_id"] == client_id
        assert who["sub"] == "test-user"
        assert who["aud"] == mcp_server.url
        assert who["scope"] == "mcp:tools"
        assert any(
            c["tool"] == "whoami" and c["client_id"] == client_id
            for c in mcp_server.calls()
        )

        # refresh rotates the refresh token; the new access token works on the same session
        ref = token_request(
            client,
            auth_server,
            {"grant_type": "refresh_token", "refresh_token": refresh},
            client_id=client_id,
            secret=secret,
            method="client_secret_basic",
        )
        assert ref.status_code == 200, ref.text
        refresh2 = ref.json()["refresh_token"]
        assert refresh2 != refresh
        rpc.token = ref.json()["access_token"]
        assert (
            rpc.call_tool("echo", {"text": "after refresh"})["content"][0]["text"]
            == "after refresh"
        )

        introspect = meta["introspection_endpoint"]
        seen = client.post(
            introspect, data={"token": refresh2}, auth=(client_id, secret)
        ).json()
        assert seen["active"] is True
        assert seen["client_id"] == client_id
        revoked = client.post(
            meta["revocation_endpoint"],
            data={"token": refresh2},
            auth=(client_id, secret),
        )
        assert revoked.status_code == 200
        seen = client.post(
            introspect, data={"token": refresh2}, auth=(client_id, secret)
        ).json()
        assert seen == {"active": False}
        again = token_request(
            client,
            auth_server,
            {"grant_type": "refresh_token", "refresh_token": refresh2},
            client_id=client_id,
            secret=secret,
            method="client_secret_basic",
        )
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("client_id", "secret", "method"),
    [
        ("static-basic", "static-basic-secret", "client_secret_basic"),
        ("static-post", "static-post-secret", "client_secret_post"),
        ("static-public", None, "none"),
    ],
)
def test_static_clients_any_loopback_port(
    auth_server: AuthServer,
    mcp_server: MCPServer,
    client_id: str,
    secret: str | None,
    method: str,
) -> None:
    tokens = login(
        auth_server,
        mcp_server.url,
        client_id=client_id,
        secret=secret,
        method=method,
        port=40000 + len(method),
    )
    assert tokens.refresh_token
    with http() as client:
        rpc = Rpc(client, mcp_server.url, token=tokens.access_token)
        rpc.initialize()
        who = rpc.call_tool("whoami")["structuredContent"]
        assert who["client_id"] == client_id


def test_scopes_and_step_up(auth_server: AuthServer, mcp_server: MCPServer) -> None:
    weak = login(auth_server, mcp_server.url, scope="mcp:read")
    with http() as client:
        rpc = Rpc(client, mcp_server.url, token=weak.access_token)
        resp = rpc.post("ping")
        assert resp.status_code == 403
        params = challenge_params(resp.headers["www-authenticate"])
        assert params["error"] == "insufficient_scope"
        assert "mcp:tools" in params["scope"].split()

        tools = login(auth_server, mcp_server.url, scope="mcp:tools")
        rpc.token = tools.access_token
        rpc.initialize()
        assert rpc.call_tool("add", {"a": 2, "b": 3})["structuredContent"] == {
            "result": 5
        }
        assert rpc.call_tool("fail", {"message": "boom"})["isError"] is True
        resp = rpc.post("tools/call", {"name": "admin_only", "arguments": {}})
        assert resp.status_code == 403
        params = challenge_params(resp.headers["www-authenticate"])
        assert params["error"] == "insufficient_scope"
        assert set(params["scope"].split()) == {"mcp:tools", "mcp:admin"}
        assert params["resource_metadata"] == mcp_server.prm_url

        admin = login(auth_server, mcp_server.url, scope="mcp:tools mcp:admin")
        # same client and subject: the session stays usable with the new token
        rpc.token = admin.access_token
        assert (
            rpc.call_tool("admin_only")["content"][0]["text"]
            == "admin ok for test-user"
        )

        rpc.token = tools.access_token[:-4] + "AAAA"
        resp = rpc.post("ping")
        assert resp.status_code == 401
        assert (
            challenge_params(resp.headers["www-authenticate"])["error"]
            == "invalid_token"
        )


def test_progress_list_changed_http_error_and_session_expiry(
    open_mcp_server: MCPServer,
) -> None:
    with http() as client:
        rpc = Rpc(client, open_mcp_server.url)
        rpc.initialize()
        resp = rpc.post(
            "tools/call",
            {
                "name": "slow",
                "arguments": {"seconds": 0.2, "steps": 2},
                "_meta": {"progressToken": "p1"},
            },
        )
        assert resp.headers["content-type"].startswith("text/event-stream")
        messages = sse_messages(resp)
        progress = [m for m in messages if m.get("method") == "notifications/progress"]
        assert [m["params"]["progress"] for m in progress] == [1, 2]
        assert messages[-1]["result"]["content"][0]["text"].startswith("slept")

        messages = sse_messages(
            rpc.post("tools/call", {"name": "change_tools", "arguments": {}})
        )
        assert messages[0]["method"] == "notifications/tools/list_changed"
        added = messages[-1]["result"]["structuredContent"]["added"]
        names = [t["name"] for t in rpc.request("tools/list")["tools"]]
        assert added in names

        resp = rpc.post("tools/call", {"name": "http_error", "arguments": {}})
        assert resp.status_code == 400
        assert resp.json()["result"]["isError"] is True

        assert open_mcp_server.expire_sessions() >= 1
        resp = rpc.post("tools/list")
        assert resp.status_code == 404
        rpc.session_id = None
        rpc.initialize()
        assert (
            rpc.call_tool("echo", {"text": "new session"})["content"][0]["text"]
            == "new session"
        )


def test_pagination_and_odd_tools(tmp_peers: PeerFactory) -> None:
    server = tmp_peers.mcp_server(
        MCP_BIG_TOOLS=True,
        MCP_ODD_TOOLS=True,
        MCP_JSON_RESPONSE=True,
        MCP_STATELESS=True,
    )
    with http() as client:
        rpc = Rpc(client, server.url)
        rpc.initialize()
        assert rpc.session_id is None  # stateless
        names: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            result = rpc.request("tools/list", {"cursor": cursor} if cursor else {})
            names += [t["name"] for t in result["tools"]]
            pages += 1
            cursor = result.get("nextCursor")
            if not cursor:
                break
        assert pages == 3
        assert len(names) == len(set(names)) == 8 + 2 + 120
        long_name = next(n for n in names if len(n) == 100)
        assert rpc.call_tool(long_name)["isError"] is False
        tree = {
            "root": {"name": "a", "children": [{"name": "b"}]},
            "mode": "deep",
            "note": None,
        }
        assert rpc.call_tool("tree", tree)["structuredContent"] == tree


def test_protocol_revisions(tmp_peers: PeerFactory) -> None:
    modern = tmp_peers.mcp_server(MCP_PROTOCOL_VERSIONS="2026-07-28")
    old = tmp_peers.mcp_server(MCP_PROTOCOL_VERSIONS="2025-03-26")
    with http() as client:
        rpc = Rpc(client, modern.url)
        resp = rpc.post(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "x", "version": "0"},
            },
        )
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == -32022
        assert resp.json()["error"]["data"]["supported"] == ["2026-07-28"]

        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {
                "name": "peers-test",
                "version": "0",
            },
        }
        rpc.protocol_version = "2026-07-28"
        rpc.extra_headers = {"mcp-method": "server/discover"}
        found = rpc.request("server/discover", {"_meta": meta})
        assert found["supportedVersions"] == ["2026-07-28"]
        rpc.extra_headers = {"mcp-method": "tools/call", "mcp-name": "echo"}
        resp = rpc.post(
            "tools/call",
            {"name": "echo", "arguments": {"text": "modern"}, "_meta": meta},
        )
        assert resp.status_code == 200, resp.text
        assert "mcp-session-id" not in resp.headers
        assert sse_messages(resp)[-1]["result"]["content"][0]["text"] == "modern"
        assert modern.calls()[-1]["protocol_version"] == "2026-07-28"

        rpc = Rpc(client, old.url)
        assert rpc.initialize("2025-11-25")["protocolVersion"] == "2025-03-26"
        assert rpc.session_id
        assert rpc.call_tool("echo", {"text": "old"})["content"][0]["text"] == "old"
        rpc.protocol_version = "2026-07-28"
        assert rpc.post("tools/list").status_code == 400


def test_as_fault_switches(tmp_peers: PeerFactory) -> None:
    auth = tmp_peers.auth_server(
        AS_NO_PKCE_METADATA=True, AS_WRONG_ISSUER=True, AS_WRONG_ISS=True
    )
    meta = auth.metadata()
    assert "code_challenge_methods_supported" not in meta
    assert meta["issuer"] == auth.issuer + "/wrong"
    _, challenge = pkce_pair()
    with http() as client:
        params = authorize(
            client,
            auth,
            client_id="static-public",
            redirect_uri="http://127.0.0.1:5000/oauth/callback",
            resource="http://127.0.0.1:1/mcp",
            challenge=challenge,
        )
    assert params["iss"] == auth.issuer + "/wrong"
    assert "code" in params


def test_tls_and_introspection(tmp_peers: PeerFactory) -> None:
    pair = tmp_peers.peers(
        tls=True,
        as_env={"AS_ACCESS_TOKEN_FORMAT": "opaque", "AS_REFRESH_ALWAYS": "0"},
        mcp_env={"MCP_TOKEN_VALIDATION": "introspection", "MCP_JSON_RESPONSE": "1"},
    )
    assert pair.ca_file is not None
    assert pair.ca_file == pair.mcp.ca_file
    assert pair.url.startswith("https://")
    tokens = login(
        pair.auth_server,
        pair.url,
        client_id="static-post",
        secret="static-post-secret",
        method="client_secret_post",
    )
    assert tokens.refresh_token is None  # AS_REFRESH_ALWAYS=0 and no offline_access
    with http(pair.mcp) as client:
        rpc = Rpc(client, pair.url, token=tokens.access_token)
        rpc.initialize()
        who = rpc.call_tool("whoami")["structuredContent"]
        assert who["client_id"] == "static-post"
        assert who["sub"] == "test-user"
    offline = login(
        pair.auth_server,
        pair.url,
        client_id="static-post",
        secret="static-post-secret",
        method="client_secret_post",
        scope="mcp:tools offline_access",
    )
    assert offline.refresh_token


@pytest.mark.parametrize(
    ("fixture_name", "expected"),
    [
        ("mcp_server_2025_03_26", "2025-03-26"),
        ("mcp_server_2025_11_25", "2025-11-25"),
        ("mcp_server_2026_07_28", "2026-07-28"),
    ],
)
async def test_sdk_client_negotiates_each_revision(
    request: pytest.FixtureRequest,
    auth_server: AuthServer,
    fixture_name: str,
    expected: str,
) -> None:
    server: MCPServer = request.getfixturevalue(fixture_name)
    tokens = login(auth_server, server.url)
    headers = {"authorization": f"Bearer {tokens.access_token}"}
    async with (
        httpx2.AsyncClient(
            headers=headers, trust_env=False, timeout=15.0
        ) as http_client,
        Client(streamable_http_client(server.url, http_client=http_client)) as client,
    ):
        result = await client.call_tool("whoami")
        assert result.structured_content is not None
        assert result.structured_content["client_id"] == "static-basic"
    call = server.calls()[-1]
    assert call["tool"] == "whoami"
    assert call["protocol_version"] == expected
    assert (call["session_id"] is None) == (expected == "2026-07-28")

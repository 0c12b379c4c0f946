"""Fixtures and helpers for hub tests: a Tether wired to real loopback peers.

Helpers talk to the peers directly (plain httpx2, no Tether code) so that the tests can
prove what the authorization server and the MCP server saw: introspection, a direct
refresh-token grant, ``whoami`` over Streamable HTTP, and the AS request log.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from peers.fixture import AuthServer, MCPServer, Peers
from peers.plugin import PeerFactory
from tether.hub.tether import ConnectionInfo, Tether
from tether.net.browser import follow_authorization
from tether.net.policy import NetworkPolicy
from tether.store.base import Connection
from tether.store.crypto import KeyRing

REDIRECT_URI = "http://127.0.0.1:8470/oauth/callback"
LOOPBACK = ["127.0.0.0/8", "::1/128"]
POLICY = NetworkPolicy.from_allowlist(LOOPBACK)
RS_CLIENT = ("mcp-resource-server", "mcp-resource-server-secret")
ACCEPT = "application/json, text/event-stream"

MakeTether = Callable[..., Awaitable[Tether]]


class FakeClock:
    """A clock that starts at the wall clock and moves only when told."""

    def __init__(self) -> None:
        self.current = datetime.now(UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The SQLite file ``make_tether`` opens."""
    return tmp_path / "tether.db"


@pytest.fixture
async def make_tether(db_path: Path) -> AsyncIterator[MakeTether]:
    """Build Tethers on a fresh SQLite file (closed after the test).

    Tests that also use ``tmp_peers`` list it first, so the Tethers (and their pooled
    connections) close before those peers stop; otherwise a TLS peer waits out its
    shutdown grace period.
    """
    opened: list[Tether] = []

    async def factory(**overrides: Any) -> Tether:
        options: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{db_path}",
            "key_ring": KeyRing.generate(),
            "redirect_uri": REDIRECT_URI,
            "allow_networks": LOOPBACK,
        }
        options.update(overrides)
        tether = await Tether.open(**options)
        opened.append(tether)
        return tether

    yield factory
    for tether in opened:
        await tether.aclose()


@pytest.fixture(scope="session")
def opaque_peers(peer_factory: PeerFactory) -> Peers:
    """AS with opaque access tokens + MCP server validating them by introspection.

    Opaque access tokens can be introspected (oidc-provider cannot introspect its JWT
    access tokens), so revocation of both tokens is observable (REV-3).
    """
    return peer_factory.peers(
        as_env={"AS_ACCESS_TOKEN_FORMAT": "opaque"},
        mcp_env={"MCP_TOKEN_VALIDATION": "introspection"},
    )


# ---------------------------------------------------------------- Tether side


def oauth_server(
    mcp: MCPServer | Peers | str,
    *,
    name: str = "demo",
    ca_bundle: str | None = None,
    **oauth: Any,
) -> dict[str, Any]:
    """A server spec in OAuth mode for ``mcp`` (extra keywords go to ``oauth``)."""
    url = mcp if isinstance(mcp, str) else mcp.url
    spec: dict[str, Any] = {
        "name": name,
        "url": url,
        "auth_mode": "oauth",
        "allow_networks": LOOPBACK,
        "oauth": oauth,
    }
    if ca_bundle is not None:
        spec["ca_bundle"] = ca_bundle
    return spec


async def authorize(
    tether: Tether,
    server_ref: str,
    *,
    user: str = "admin",
    ca_bundle: str | None = None,
) -> dict[str, str | list[str]]:
    """Start a connect and let the auto-approving AS answer; the callback params."""
    started = await tether.connect(server_ref, user=user)
    return await follow_authorization(
        started.authorization_url, REDIRECT_URI, POLICY, ca_bundle=ca_bundle
    )


async def connect(
    tether: Tether,
    server_ref: str,
    *,
    user: str = "admin",
    ca_bundle: str | None = None,
) -> ConnectionInfo:
    """A whole connect: start, headless authorization, complete."""
    params = await authorize(tether, server_ref, user=user, ca_bundle=ca_bundle)
    info = await tether.complete(params, user=user)
    assert info.status == "connected", info
    return info


async def stored(tether: Tether, server_id: str, subject: str = "shared") -> Connection:
    """The stored (decrypted) connection record."""
    conn = await tether.stores.connections.get(server_id, subject)
    assert conn is not None
    return conn


def secret(value: Any) -> str:
    """The plain value of a stored ``SecretStr`` (must be set)."""
    assert value is not None
    plain: str = value.get_secret_value()
    return plain


@dataclass(frozen=True)
class SentRequest:
    """One request Tether's fetcher sent (headers and form as given to it)."""

    method: str
    url: str
    step: str
    headers: dict[str, str]
    form: dict[str, str]


class FetchSpy:
    """Records every request of a Tether's fetcher (the requests still go out)."""

    def __init__(self, tether: Tether, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[SentRequest] = []
        original = tether.fetcher.request

        async def request(method: str, url: str, **kwargs: Any) -> Any:
            self.sent.append(
                SentRequest(
                    method,
                    url,
                    kwargs["step"],
                    {k.lower(): v for k, v in (kwargs.get("headers") or {}).items()},
                    dict(kwargs.get("form") or {}),
                )
            )
            return await original(method, url, **kwargs)

        monkeypatch.setattr(tether.fetcher, "request", request)

    def steps(self, step: str) -> list[SentRequest]:
        """The requests of one flow step (``token``, ``revocation``, …)."""
        return [sent for sent in self.sent if sent.step == step]


# ---------------------------------------------------------------- peer side


def http(peer: AuthServer | MCPServer | None = None) -> httpx2.Client:
    """A synchronous client for the peers (trusting their CA when they use TLS)."""
    context = peer.ssl_context() if peer is not None else None
    return httpx2.Client(
        timeout=15.0, trust_env=False, verify=context if context is not None else True
    )


def introspect(auth: AuthServer, token: str) -> dict[str, Any]:
    """RFC 7662 introspection as the resource-server client."""
    endpoint = auth.metadata()["introspection_endpoint"]
    with http(auth) as client:
        resp = client.post(endpoint, data={"token": token}, auth=RS_CLIENT)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def refresh_grant(
    auth: AuthServer,
    refresh_token: str,
    *,
    client_id: str,
    client_secret: str | None,
    method: str,
) -> httpx2.Response:
    """POST a refresh_token grant straight to the AS, as the connection's client."""
    endpoint = auth.metadata()["token_endpoint"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    with http(auth) as client:
        if method == "client_secret_basic":
            assert client_secret is not None
            return client.post(endpoint, data=form, auth=(client_id, client_secret))
        form["client_id"] = client_id
        if method == "client_secret_post":
            assert client_secret is not None
            form["client_secret"] = client_secret
        return client.post(endpoint, data=form)


def as_requests(auth: AuthServer, method: str, path: str) -> list[str]:
    """AS log lines (``AS_LOG=1``) for requests to ``method path`` (query ignored)."""
    prefix = f"[as] {method} {path}"
    return [
        line
        for line in auth.log().splitlines()
        if line.startswith(prefix) and line[len(prefix)] in " ?"
    ]


def _sse_messages(resp: httpx2.Response) -> list[dict[str, Any]]:
    if resp.headers.get("content-type", "").startswith("application/json"):
        body = resp.json()
        return body if isinstance(body, list) else [body]
    out: list[dict[str, Any]] = []
    for line in resp.text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            out.append(json.loads(line[5:]))
    return out


@dataclass
class Rpc:
    """A minimal Streamable HTTP client carrying one bearer token."""

    client: httpx2.Client
    url: str
    token: str
    session_id: str | None = None
    next_id: int = 1
    headers: dict[str, str] = field(default_factory=dict)

    def post(
        self, method: str, params: dict[str, Any] | None = None
    ) -> httpx2.Response:
        headers = {
            "accept": ACCEPT,
            "content-type": "application/json",
            "authorization": f"Bearer {self.token}",
            **self.headers,
        }
        if self.session_id:
            headers["mcp-session-id"] = self.session_id
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        if not method.startswith("notifications/"):
            msg["id"] = self.next_id
            self.next_id += 1
        return self.client.post(self.url, json=msg, headers=headers)

    def initialize(self) -> None:
        resp = self.post(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "hub-e2e", "version": "0"},
            },
        )
        assert resp.status_code == 200, (resp.status_code, resp.text)
        self.session_id = resp.headers.get("mcp-session-id")
        result = _sse_messages(resp)[0]["result"]
        self.headers["mcp-protocol-version"] = result["protocolVersion"]
        assert self.post("notifications/initialized").status_code == 202

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        resp = self.post("tools/call", {"name": name, "arguments": arguments})
        assert resp.status_code == 200, (resp.status_code, resp.text)
        final = [m for m in _sse_messages(resp) if "id" in m]
        assert len(final) == 1, resp.text
        assert "result" in final[0], resp.text
        result: dict[str, Any] = final[0]["result"]
        return result


def whoami(mcp: MCPServer, token: str) -> dict[str, Any]:
    """The claims the MCP server saw for ``token`` (its ``whoami`` tool)."""
    with http(mcp) as client:
        session = Rpc(client, mcp.url, token)
        session.initialize()
        result = session.call_tool("whoami", {})
    data: dict[str, Any] = result["structuredContent"]
    return data


def mcp_status(mcp: MCPServer, token: str) -> int:
    """The HTTP status of an ``initialize`` carrying ``token`` (401 once revoked)."""
    with http(mcp) as client:
        resp = Rpc(client, mcp.url, token).post(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "hub-e2e", "version": "0"},
            },
        )
    return resp.status_code

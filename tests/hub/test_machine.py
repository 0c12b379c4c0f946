"""Grants without a browser (hub/machine.py): client credentials and ID-JAG.

Real peers: test_e2e_machine.py (oidc-provider, client secret and private_key_jwt) and
the conformance suite (auth/client-credentials-basic, -jwt,
auth/cross-app-access-complete-flow). Here a scripted fetcher plays the IdP and the AS
(error injection); everything else is the real hub and the memory store.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hub.fakes import FakeFetcher, Sent
from tether.errors import (
    AuthorizationRequired,
    ConfigurationError,
    InvalidClient,
    InvalidResponse,
    UsageError,
)
from tether.hub.context import HubConfig
from tether.hub.tether import Tether
from tether.net.fetch import HttpResponse
from tether.oauth.token_exchange import ID_JAG_TOKEN_TYPE, JWT_BEARER_GRANT
from tether.store.base import DiscoveryRecord, ServerRecord
from tether.store.crypto import KeyRing
from tether.store.memory import open_memory_stores

ISSUER = "https://as.example"
TOKEN = f"{ISSUER}/token"
IDP = "https://idp.example/token"
MCP = "https://mcp.example/mcp"
KEY = ec.generate_private_key(ec.SECP256R1())
KEY_PEM = KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()
PUBLIC_PEM = KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)

Handler = Callable[[Mapping[str, str], Mapping[str, str]], HttpResponse]


class Clock:
    def __init__(self) -> None:
        self.current = datetime.now(UTC)

    def now(self) -> datetime:
        return self.current


def answer(status: int, url: str, **members: Any) -> HttpResponse:
    return HttpResponse(
        status,
        {"content-type": ["application/json"]},
        json.dumps(members).encode(),
        url,
    )


class RouterFetcher(FakeFetcher):
    """Answers POSTs by URL; records (step, url, headers, form)."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        super().__init__()
        self.routes = routes

    @property
    def sent(self) -> list[tuple[str, str, dict[str, str], dict[str, str]]]:
        return [(r.step, r.url, r.headers, r.form) for r in self.requests]

    def answer(self, sent: Sent) -> HttpResponse:
        return self.routes[sent.url](sent.headers, sent.form)

    def form(self, step: str) -> list[dict[str, str]]:
        return [f for s, _, _, f in self.sent if s == step]


def token_ok(n: list[int]) -> Handler:
    def handle(headers: Mapping[str, str], form: Mapping[str, str]) -> HttpResponse:
        n.append(1)
        return answer(
            200, TOKEN, access_token=f"at-{len(n)}", token_type="Bearer", expires_in=300
        )

    return handle


async def _resolver(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


async def hub(routes: dict[str, Handler]) -> tuple[Tether, RouterFetcher, Clock]:
    stores, _ = open_memory_stores(KeyRing.generate())
    fetcher = RouterFetcher(routes)
    clock = Clock()
    tether = Tether(
        stores=stores,
        fetcher=fetcher,
        config=HubConfig(redirect_uri="https://tether.example/oauth/callback"),
        clock=clock,
        resolver=_resolver,
    )
    return tether, fetcher, clock


async def add_server(
    tether: Tether,
    *,
    scopes_supported: tuple[str, ...] = ("mcp:read",),
    as_meta: Mapping[str, Any] | None = None,
    **oauth: Any,
) -> ServerRecord:
    server = await tether.servers.create(
        {
            "name": "m2m",
            "url": MCP,
            "auth_mode": "oauth",
            "oauth": {"client_id": "svc", "registration": "manual", **oauth},
        },
        actor="admin",
    )
    meta = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": TOKEN,
        "code_challenge_methods_supported": ["S256"],
        **(as_meta or {}),
    }
    record = DiscoveryRecord(
        server_id=server.id,
        resource=MCP,
        resource_metadata_url=f"{MCP}/.well-known/oauth-protected-resource",
        authorization_servers=(ISSUER,),
        scopes_supported=scopes_supported,
        issuer=ISSUER,
        as_metadata=meta,
        as_metadata_url=f"{ISSUER}/.well-known/oauth-authorization-server",
        fetched_at=datetime.now(UTC),
    )
    await tether.stores.discovery.put(record)

    async def discover(
        server: ServerRecord, *, challenge: Any = None, persist: bool = True
    ) -> Any:
        return record

    tether.connections.discoverer.discover = discover  # type: ignore[method-assign]
    return server


async def secret(tether: Tether, value: str, name: str = "s") -> str:
    return (await tether.credentials.create(name, value, actor="admin")).id


# ----------------------------------------------------------------- client credentials


async def test_first_use_runs_the_grant_and_expiry_runs_it_again() -> None:
    calls: list[int] = []
    tether, fetcher, clock = await hub({TOKEN: token_ok(calls)})
    cred = await secret(tether, "pa:ss")
    server = await add_server(
        tether, grant="client_credentials", client_secret_credential_id=cred
    )
    conn = await tether.connections.usable(server, "shared")
    assert conn.access_token is not None
    assert conn.access_token.get_secret_value() == "at-1"
    step, url, headers, form = fetcher.sent[0]
    assert (step, url) == ("token", TOKEN)
    assert form["grant_type"] == "client_credentials"
    assert form["resource"] == MCP  # RFC 8707
    assert form["scope"] == "mcp:read"  # PRM scopes_supported, as for the code flow
    assert "client_secret" not in form
    basic = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode()
    assert basic == "svc:pa%3Ass"  # RFC 6749 §2.3.1 form-encoding

    again = await tether.connections.usable(server, "shared")
    assert again.access_token == conn.access_token
    assert len(calls) == 1
    clock.current += timedelta(seconds=290)  # inside the refresh margin
    renewed = await tether.connections.usable(server, "shared")
    assert renewed.access_token is not None
    assert renewed.access_token.get_secret_value() == "at-2"
    assert renewed.refresh_token is None


async def test_a_401_re_runs_the_grant() -> None:
    calls: list[int] = []
    tether, _, _ = await hub({TOKEN: token_ok(calls)})
    cred = await secret(tether, "x")
    server = await add_server(
        tether, grant="client_credentials", client_secret_credential_id=cred
    )
    first = await tether.connections.usable(server, "shared")
    second = await tether.connections.refresh(server, "shared", stale=first)
    assert second.access_token is not None
    assert second.access_token.get_secret_value() == "at-2"


async def test_connect_machine_and_browser_connect_is_refused() -> None:
    tether, _, _ = await hub({TOKEN: token_ok([])})
    cred = await secret(tether, "x")
    await add_server(
        tether, grant="client_credentials", client_secret_credential_id=cred
    )
    info = await tether.connect_machine("m2m")
    assert info.status == "connected"
    assert info.scopes == ("mcp:read",)
    with pytest.raises(UsageError, match="connect_machine"):
        await tether.connect("m2m")
    with pytest.raises(UsageError, match="enterprise"):
        await tether.connect_enterprise("m2m", id_token="t")


async def test_private_key_jwt_assertion() -> None:
    tether, fetcher, _ = await hub({TOKEN: token_ok([])})
    key = await secret(tether, KEY_PEM, "key")
    server = await add_server(
        tether,
        grant="client_credentials",
        private_key_credential_id=key,
        as_meta={
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        },
    )
    await tether.connections.usable(server, "shared")
    _, _, headers, form = fetcher.sent[0]
    assert "Authorization" not in headers
    assert form["client_assertion_type"] == (
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
    claims = jwt.decode(
        form["client_assertion"], PUBLIC_PEM, algorithms=["ES256"], audience=ISSUER
    )
    assert claims["iss"] == claims["sub"] == "svc"
    assert claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize(
    ("oauth", "as_meta", "step", "message"),
    [
        ({}, {}, "client_authentication", "negotiated 'none'"),
        (
            {"secret": True},
            {"grant_types_supported": ["authorization_code"]},
            "discovery",
            "does not list the client_credentials grant",
        ),
        (
            {"key": True},
            {"token_endpoint_auth_methods_supported": ["client_secret_basic"]},
            "client_authentication",
            "does not accept private_key_jwt",
        ),
        (
            {"key": True},
            {"token_endpoint_auth_signing_alg_values_supported": ["RS256"]},
            "client_assertion",
            "not ES256",
        ),
    ],
)
async def test_configuration_errors_name_server_and_step(
    oauth: dict[str, bool], as_meta: dict[str, Any], step: str, message: str
) -> None:
    tether, fetcher, _ = await hub({TOKEN: token_ok([])})
    settings: dict[str, Any] = {"grant": "client_credentials"}
    if oauth.get("secret"):
        settings["client_secret_credential_id"] = await secret(tether, "x")
    if oauth.get("key"):
        settings["private_key_credential_id"] = await secret(tether, KEY_PEM, "k")
    server = await add_server(tether, as_meta=as_meta, **settings)
    with pytest.raises(ConfigurationError, match=message) as info:
        await tether.connections.usable(server, "shared")
    assert info.value.server == "m2m"
    assert info.value.step == step
    assert fetcher.sent == []
    conn = await tether.connections.get(server, "shared")
    assert conn.last_error_code == info.value.code


async def test_token_endpoint_refusal_names_server_and_step() -> None:
    tether, _, _ = await hub(
        {TOKEN: lambda h, f: answer(401, TOKEN, error="invalid_client")}
    )
    cred = await secret(tether, "x")
    server = await add_server(
        tether, grant="client_credentials", client_secret_credential_id=cred
    )
    with pytest.raises(InvalidClient) as info:
        await tether.connections.usable(server, "shared")
    assert (info.value.server, info.value.step) == ("m2m", "token")
    assert info.value.details["url"] == TOKEN


async def test_save_time_validation() -> None:
    tether, _, _ = await hub({})
    with pytest.raises(UsageError, match="idp_token_endpoint"):
        await tether.servers.create(
            {
                "name": "e",
                "url": MCP,
                "auth_mode": "oauth",
                "oauth": {"grant": "enterprise", "client_id": "c"},
            },
            actor=None,
        )
    with pytest.raises(UsageError, match="pre-registered client id"):
        await tether.servers.create(
            {
                "name": "c",
                "url": MCP,
                "auth_mode": "oauth",
                "oauth": {"grant": "client_credentials"},
            },
            actor=None,
        )


# ----------------------------------------------------------------- enterprise (ID-JAG)


def idp_ok(headers: Mapping[str, str], form: Mapping[str, str]) -> HttpResponse:
    return answer(
        200,
        IDP,
        access_token="the.id.jag",
        issued_token_type=ID_JAG_TOKEN_TYPE,
        token_type="N_A",
    )


async def enterprise(
    routes: dict[str, Handler], **oauth: Any
) -> tuple[Tether, RouterFetcher, ServerRecord]:
    tether, fetcher, _ = await hub(routes)
    cred = await secret(tether, "as-secret")
    server = await add_server(
        tether,
        grant="enterprise",
        client_secret_credential_id=cred,
        idp_token_endpoint=IDP,
        idp_client_id="idp-client",
        per_user=True,
        **oauth,
    )
    return tether, fetcher, server


async def test_enterprise_flow() -> None:
    tether, fetcher, server = await enterprise({IDP: idp_ok, TOKEN: token_ok([])})
    info = await tether.connect_enterprise("m2m", user="alice", id_token="the.id.token")
    assert info.status == "connected"
    assert info.subject == "alice"
    exchange = fetcher.form("token_exchange")[0]
    assert exchange == {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "requested_token_type": ID_JAG_TOKEN_TYPE,
        "subject_token": "the.id.token",
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "audience": ISSUER,
        "resource": MCP,
        "scope": "mcp:read",
        "client_id": "idp-client",
    }
    grant = fetcher.form("token")[0]
    assert grant["grant_type"] == JWT_BEARER_GRANT
    assert grant["assertion"] == "the.id.jag"
    _, _, headers, _ = fetcher.sent[1]
    assert headers["Authorization"].startswith("Basic ")
    events = await tether.audit(server_ref="m2m")
    text = repr([(e.action, e.before, e.after, e.detail) for e in events])
    assert "the.id.jag" not in text
    assert "the.id.token" not in text
    # no stored ID token: an expired grant cannot be renewed without the user
    clock = tether.ctx.clock
    assert isinstance(clock, Clock)
    clock.current += timedelta(hours=1)
    with pytest.raises(AuthorizationRequired, match="fresh ID token"):
        await tether.connections.usable(server, "alice")


async def test_enterprise_static_id_token_renews() -> None:
    calls: list[int] = []
    tether, fetcher, _ = await enterprise({IDP: idp_ok, TOKEN: token_ok(calls)})
    cred = await secret(tether, "static.id.token", "idt")
    await tether.servers.update(
        "m2m", {"oauth": {"idp_id_token_credential_id": cred}}, actor=None
    )
    server = await tether.servers.get("m2m")
    conn = await tether.connections.usable(server, "bob")
    assert conn.access_token is not None
    assert fetcher.form("token_exchange")[0]["subject_token"] == "static.id.token"


@pytest.mark.parametrize(
    ("idp", "error", "message"),
    [
        (
            lambda h, f: answer(200, IDP, access_token="x", issued_token_type="other"),
            InvalidResponse,
            "not an ID-JAG",
        ),
        (
            lambda h, f: answer(400, IDP, error="invalid_grant"),
            Exception,
            "invalid_grant",
        ),
    ],
)
async def test_idp_errors_name_server_and_step(
    idp: Handler, error: type[Exception], message: str
) -> None:
    tether, fetcher, _ = await enterprise({IDP: idp, TOKEN: token_ok([])})
    with pytest.raises(error, match=message) as info:
        await tether.connect_enterprise("m2m", user="alice", id_token="t")
    assert getattr(info.value, "server", None) == "m2m"
    assert getattr(info.value, "step", None) == "token_exchange"
    assert fetcher.form("token") == []


async def test_enterprise_without_id_token_is_a_usage_error() -> None:
    tether, _, _ = await enterprise({})
    with pytest.raises(UsageError, match="ID token"):
        await tether.connect_enterprise("m2m", user="alice")

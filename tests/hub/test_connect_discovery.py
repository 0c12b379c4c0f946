"""Connect start against scripted servers: the challenge, legacy endpoints, an AS switch.

PRM-3/SCP-2 (the challenge that triggered the connect), ASM-9 (``legacy_endpoints``),
PRM-9 / SEP-2352 (a new authorization server means a new client, and the old grant is
never presented to it). The fetcher answers by URL; everything else is the real hub.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from hub.fakes import FakeFetcher, Sent
from tether.errors import AuthorizationRequired, DiscoveryError
from tether.hub.audit import Auditor
from tether.hub.clock import SystemRandom
from tether.hub.connections import Connections
from tether.hub.context import HubConfig, HubContext
from tether.hub.discovery import unauthenticated_challenge
from tether.net.fetch import HttpResponse, NetworkProfile
from tether.oauth.challenge import BearerChallenge
from tether.store.base import Connection, OAuthSettings, ServerRecord, Stores
from tether.store.crypto import KeyRing
from tether.store.memory import open_memory_stores

MCP = "https://mcp.example/mcp"
PRM = "https://mcp.example/.well-known/oauth-protected-resource/mcp"
CUSTOM_PRM = "https://meta.example/prm.json"
AS1, AS2 = "https://as1.example", "https://as2.example"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
Answer = tuple[int, Any, dict[str, str]]


class Clock:
    def now(self) -> datetime:
        return NOW


def as_doc(issuer: str, **extra: Any) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "registration_endpoint": f"{issuer}/register",
        "revocation_endpoint": f"{issuer}/revoke",
        "code_challenge_methods_supported": ["S256"],
        **extra,
    }


class RoutedFetcher(FakeFetcher):
    """Answers ``(method, url)`` from a table (404 otherwise) and records requests."""

    def __init__(self, routes: dict[tuple[str, str], Answer]) -> None:
        super().__init__()
        self.routes = routes

    @property
    def sent(self) -> list[tuple[str, str, str, dict[str, str]]]:
        return [
            (r.method, r.url, r.step, {**r.headers, **r.form}) for r in self.requests
        ]

    def answer(self, sent: Sent) -> HttpResponse:
        return json_answer(
            self.routes.get((sent.method, sent.url), (404, {}, {})), sent
        )

    def urls(self, step: str) -> list[str]:
        return [url for _, url, s, _ in self.sent if s == step]


def json_answer(answer: Answer, sent: Sent) -> HttpResponse:
    status, body, extra = answer
    headers_out = {"content-type": ["application/json"]}
    headers_out.update({k: [v] for k, v in extra.items()})
    return HttpResponse(status, headers_out, json.dumps(body).encode(), sent.url)


def challenge_401(**params: str) -> Answer:
    value = "Bearer " + ", ".join(f'{k}="{v}"' for k, v in params.items())
    return 401, {}, {"www-authenticate": value}


def routes_at(issuer: str, **as_extra: Any) -> dict[tuple[str, str], Answer]:
    return {
        ("GET", PRM): (200, {"resource": MCP, "authorization_servers": [issuer]}, {}),
        ("GET", f"{issuer}/.well-known/oauth-authorization-server"): (
            200,
            as_doc(issuer, **as_extra),
            {},
        ),
        ("POST", f"{issuer}/register"): (
            201,
            {
                "client_id": f"client-of-{issuer[8:11]}",
                "token_endpoint_auth_method": "none",
            },
            {},
        ),
    }


async def hub(
    fetcher: RoutedFetcher, **oauth: Any
) -> tuple[Connections, ServerRecord, Stores]:
    stores, _ = open_memory_stores(KeyRing.generate(), now=Clock().now)
    server = await stores.servers.add(
        ServerRecord(
            id="s1",
            name="srv",
            url=MCP,
            auth_mode="oauth",
            oauth=OAuthSettings(**oauth),
        )
    )
    ctx = HubContext(
        stores=stores,
        clock=Clock(),
        random=SystemRandom(),
        fetcher=fetcher,
        auditor=Auditor(stores.audit, Clock()),
        config=HubConfig(redirect_uri="https://tether.example/cb"),
    )
    return Connections(ctx), server, stores


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def test_start_asks_the_server_and_uses_its_challenge() -> None:
    """No challenge given: an unauthenticated initialize; its 401 names a PRM URL that
    is not well-known (PRM-3 step 1) and the scope to ask for (SCP-2 step 1)."""
    routes = routes_at(AS1, scopes_supported=["mcp:read", "mcp:write"])
    routes[("POST", MCP)] = challenge_401(
        resource_metadata=CUSTOM_PRM, scope="mcp:read"
    )
    routes[("GET", CUSTOM_PRM)] = routes.pop(("GET", PRM))
    fetcher = RoutedFetcher(routes)
    connections, server, _ = await hub(fetcher)
    started = await connections.start(server, subject="shared", user="admin")
    assert fetcher.urls("challenge") == [MCP]
    assert fetcher.urls("discovery")[0] == CUSTOM_PRM
    assert query(started.authorization_url)["scope"] == ["mcp:read"]


async def test_start_uses_a_given_challenge_without_asking_again() -> None:
    routes = routes_at(AS1)
    routes[("GET", CUSTOM_PRM)] = routes.pop(("GET", PRM))
    fetcher = RoutedFetcher(routes)
    connections, server, _ = await hub(fetcher)
    challenge = BearerChallenge(resource_metadata=CUSTOM_PRM, scope=("files:read",))
    started = await connections.start(
        server, subject="shared", user="admin", challenge=challenge
    )
    assert fetcher.urls("challenge") == []
    assert query(started.authorization_url)["scope"] == ["files:read"]


@pytest.mark.parametrize(
    ("configured", "expected_scope", "prompt"),
    [
        (None, "mcp:read offline_access", ["consent"]),  # SCP-4 + SCP-5
        ("mcp:read", "mcp:read", None),  # the admin's list is sent as is
    ],
)
async def test_offline_access_only_when_the_as_lists_it(
    configured: str | None, expected_scope: str, prompt: list[str] | None
) -> None:
    routes = routes_at(AS1, scopes_supported=["mcp:read", "offline_access"])
    routes[("POST", MCP)] = challenge_401(scope="mcp:read")
    connections, server, _ = await hub(RoutedFetcher(routes), scopes=configured)
    started = await connections.start(server, subject="shared", user="admin")
    assert query(started.authorization_url)["scope"] == [expected_scope]
    assert query(started.authorization_url).get("prompt") == prompt


async def test_legacy_endpoints_only_when_the_admin_opts_in() -> None:
    """ASM-9: no PRM, no AS metadata; 2025-03-26 defaults on the server's origin."""
    fetcher = RoutedFetcher(
        {
            ("POST", "https://mcp.example/register"): (
                201,
                {"client_id": "c", "token_endpoint_auth_method": "none"},
                {},
            )
        }
    )
    connections, server, _ = await hub(fetcher)
    with pytest.raises(DiscoveryError, match="no protected resource metadata"):
        await connections.start(server, subject="shared", user="admin")

    connections, server, stores = await hub(fetcher, legacy_endpoints=True)
    started = await connections.start(server, subject="shared", user="admin")
    assert started.authorization_url.startswith("https://mcp.example/authorize?")
    assert query(started.authorization_url)["resource"] == [MCP]
    record = await stores.discovery.get(server.id)
    assert record is not None
    assert (record.issuer, record.resource_metadata_url) == (
        "https://mcp.example",
        None,
    )


async def test_authorization_server_switch_registers_anew_and_never_reuses() -> None:
    """PRM-9, SEP-2352: after the PRM moves to AS2, connecting registers at AS2; the
    AS1 grant is neither refreshed at nor revoked at AS2, and AS1's client id never
    reaches AS2."""
    fetcher = RoutedFetcher(routes_at(AS1))
    connections, server, stores = await hub(fetcher)
    first = await connections.start(server, subject="shared", user="admin")
    assert query(first.authorization_url)["client_id"] == ["client-of-as1"]
    await stores.connections.save(
        Connection(
            server_id="s1",
            subject="shared",
            status="connected",
            access_token=SecretStr("at-1"),
            refresh_token=SecretStr("rt-1"),
            issuer=AS1,
            client_id="client-of-as1",
        ),
        expected_version=0,
    )

    fetcher.routes = routes_at(AS2)  # the PRM now names AS2
    await connections.discoverer.discover(server)
    with pytest.raises(AuthorizationRequired, match="moved to authorization server"):
        await connections.refresh(server, "shared", force=True)
    second = await connections.start(server, subject="shared", user="admin")
    assert second.authorization_url.startswith(f"{AS2}/authorize?")
    assert query(second.authorization_url)["client_id"] == ["client-of-as2"]
    assert await connections.disconnect(server, "shared", actor="admin") == [
        "authorization server changed: tokens cleared locally only"
    ]
    to_as2 = [fields for _, url, _, fields in fetcher.sent if url.startswith(AS2)]
    assert to_as2
    assert all("client-of-as1" not in json.dumps(f) for f in to_as2)
    assert all("rt-1" not in json.dumps(f) for f in to_as2)


# --------------------------------------------------------------------- 2026-07-28


class ScriptedMCP(FakeFetcher):
    """Answers MCP POSTs in order from a script and records headers and bodies."""

    def __init__(self, answers: list[Answer]) -> None:
        super().__init__()
        self.answers = answers

    @property
    def posts(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        return [(r.headers, r.json_body) for r in self.requests]

    def answer(self, sent: Sent) -> HttpResponse:
        return json_answer(self.answers.pop(0) if self.answers else (200, {}, {}), sent)


UNSUPPORTED: Answer = (
    400,
    {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {
            "code": -32022,
            "message": "Unsupported protocol version",
            "data": {"supported": ["2026-07-28"], "requested": "2026-07-28"},
        },
    },
    {},
)


async def test_stateless_preference_never_sends_initialize() -> None:
    """HTTP7-3/HTTP7-5/HTTP7-7: every tokenless request carries the revision's headers
    and ``_meta``; a -32022 answer is retried with a version from ``supported``."""
    fetcher = ScriptedMCP([UNSUPPORTED, (200, {}, {}), challenge_401(scope="a")])
    answer = await unauthenticated_challenge(
        fetcher,
        MCP,
        profile=NetworkProfile(),
        server="s",
        protocol_version="2026-07-28",
    )
    assert answer.status == 401
    assert answer.challenge is not None
    assert answer.challenge.scope == ("a",)
    methods = [body["method"] for _, body in fetcher.posts]
    assert methods == ["server/discover", "server/discover", "tools/list"]
    for headers, body in fetcher.posts:
        meta = body["params"]["_meta"]
        assert headers["MCP-Protocol-Version"] == "2026-07-28"
        assert headers["Mcp-Method"] == body["method"]
        assert meta["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
        assert meta["io.modelcontextprotocol/clientInfo"]["name"] == "tether"
        assert meta["io.modelcontextprotocol/clientCapabilities"] == {}


async def test_unsupported_stateless_falls_back_to_the_handshake() -> None:
    """A -32022 that lists only handshake revisions leads to ``initialize``."""
    only_old: Answer = (
        400,
        {
            "error": {
                "code": -32022,
                "message": "no",
                "data": {"supported": ["2025-06-18"]},
            }
        },
        {},
    )
    fetcher = ScriptedMCP([only_old, challenge_401()])
    answer = await unauthenticated_challenge(
        fetcher,
        MCP,
        profile=NetworkProfile(),
        server="s",
        protocol_version="2026-07-28",
    )
    assert answer.status == 401
    initialize = fetcher.posts[1][1]
    assert initialize["method"] == "initialize"
    assert initialize["params"]["protocolVersion"] == "2025-06-18"


async def test_default_still_starts_with_initialize() -> None:
    fetcher = ScriptedMCP([(400, {}, {}), (200, {}, {}), challenge_401()])
    answer = await unauthenticated_challenge(
        fetcher, MCP, profile=NetworkProfile(), server="s"
    )
    assert answer.status == 401
    assert [b["method"] for _, b in fetcher.posts] == [
        "initialize",
        "server/discover",
        "tools/list",
    ]

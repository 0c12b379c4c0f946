"""A hostile token or revocation endpoint ends in a TetherError; the grant survives.

Issue 11 items 6 and 8, and issue 8 item 14: ``expires_in`` as ``1e309``, ``-1`` or
``1e17``, a ``mac`` token, a missing ``access_token``, a token with CR/LF, non-ASCII or
1 MB, JSON nested 100,000 deep, an error member at HTTP 200 (Slack); and a 503 whose
``Retry-After`` is ``²`` or an HTTP-date in ``-0000``. A real authorization server does
not answer these on demand, so the fetcher is scripted (error injection); the hub and
the store are the real ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from hub.fakes import FakeFetcher, Sent, hub_context, seed_grant
from tether.errors import (
    AuthorizationRequired,
    InvalidResponse,
    OAuthError,
    TetherError,
)
from tether.hub.connections import Connections
from tether.net.fetch import HttpResponse
from tether.store.base import (
    Connection,
    ServerRecord,
    Stores,
)
from tether.store.crypto import KeyRing
from tether.store.memory import open_memory_stores

ISSUER = "https://as.example"
TOKEN = f"{ISSUER}/t"
REVOKE = f"{ISSUER}/revoke"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class Clock:
    def now(self) -> datetime:
        return NOW


class ScriptedFetcher(FakeFetcher):
    """Answers each request with the next scripted response."""

    def __init__(self, script: list[HttpResponse]) -> None:
        super().__init__()
        self.script = script

    @property
    def sent(self) -> list[Mapping[str, str]]:
        return [r.form for r in self.requests]

    def answer(self, sent: Sent) -> HttpResponse:
        return self.script.pop(0)


def response(
    status: int, body: bytes = b"", url: str = TOKEN, **headers: str
) -> HttpResponse:
    values = {k.replace("_", "-"): [v] for k, v in headers.items()}
    values.setdefault("content-type", ["application/json"])
    return HttpResponse(status, values, body, url)


def token_body(**members: object) -> bytes:
    return json.dumps(members).encode()


async def setup(script: list[HttpResponse]) -> tuple[Connections, Stores, ServerRecord]:
    stores, _ = open_memory_stores(KeyRing.generate(), now=Clock().now)
    server = await seed_grant(
        stores,
        ServerRecord(
            id="s1", name="srv", url="https://mcp.example/mcp", auth_mode="oauth"
        ),
        Connection(
            server_id="s1",
            subject="shared",
            status="connected",
            access_token=SecretStr("at-1"),
            refresh_token=SecretStr("rt-1"),
            expires_at=NOW - timedelta(minutes=1),
            issuer=ISSUER,
            client_id="c1",
        ),
        endpoints={"token_endpoint": TOKEN, "revocation_endpoint": REVOKE},
        fetched_at=NOW,
    )
    ctx = hub_context(stores, ScriptedFetcher(script), Clock())
    return Connections(ctx), stores, server


HOSTILE_TOKEN_ANSWERS = [
    (b'{"access_token": "at-2", "expires_in": 1e309}', InvalidResponse, "finite"),
    (token_body(access_token="at-2", expires_in=-1), InvalidResponse, "negative"),
    (token_body(access_token="at-2", token_type="mac"), InvalidResponse, "token_type"),
    (
        token_body(token_type="Bearer", expires_in=3600),
        InvalidResponse,
        "no access_token",
    ),
    (
        token_body(access_token="at-2\r\nX-Evil: 1"),
        InvalidResponse,
        "access_token with",
    ),
    (token_body(access_token="t\u00f6ken"), InvalidResponse, "access_token with"),
    (token_body(access_token="x" * 1_000_000), InvalidResponse, "longer than"),
    (
        token_body(access_token="ok", refresh_token="r\nx"),
        InvalidResponse,
        "refresh_token",
    ),
    (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, InvalidResponse, "nested deeper"),
    (b"<html>oops</html>", InvalidResponse, "HTML"),
]


@pytest.mark.parametrize(("body", "error", "why"), HOSTILE_TOKEN_ANSWERS)
async def test_hostile_refresh_answer_keeps_the_grant(
    body: bytes, error: type[TetherError], why: str
) -> None:
    connections, stores, server = await setup([response(200, body)])
    with pytest.raises(error, match=why) as caught:
        await connections.refresh(server, "shared", force=True)
    text = str(caught.value) + json.dumps(caught.value.to_dict(), default=str)
    assert "\x1b" not in text
    assert "at-2\r\n" not in text
    conn = await stores.connections.get("s1", "shared")
    assert conn is not None
    assert conn.access_token == SecretStr("at-1")
    assert conn.refresh_token == SecretStr("rt-1")


async def test_a_refresh_refused_inside_http_200_kills_the_grant_cleanly() -> None:
    """Slack's ``200 {"ok": false, "error": …}`` is an OAuth error: the grant is dead
    (issue 7 item 5), and the provider's escape sequences never reach the error."""
    body = token_body(
        ok=False, error="invalid_refresh_token", error_description="\x1b[2Jgone"
    )
    connections, stores, server = await setup([response(200, body)])
    with pytest.raises(AuthorizationRequired, match="invalid_refresh_token") as caught:
        await connections.refresh(server, "shared", force=True)
    text = str(caught.value) + json.dumps(caught.value.to_dict(), default=str)
    assert "\x1b" not in text
    assert isinstance(caught.value.__cause__, OAuthError)
    conn = await stores.connections.get("s1", "shared")
    assert conn is not None
    assert conn.status == "needs_reauth"
    assert conn.refresh_token is None
    assert conn.last_error is not None
    assert "\x1b" not in conn.last_error


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        ("3600", 3600),
        (1e17, 366 * 24 * 3600),
        ("99999999999999999999", 366 * 24 * 3600),
    ],
)
async def test_odd_but_numeric_expires_in_is_stored_bounded(
    expires_in: object, lifetime: int
) -> None:
    body = token_body(access_token="at-2", token_type="Bearer", expires_in=expires_in)
    connections, _, server = await setup([response(200, body)])
    conn = await connections.refresh(server, "shared", force=True)
    assert conn.access_token == SecretStr("at-2")
    assert conn.expires_at == NOW + timedelta(seconds=lifetime)


@pytest.mark.parametrize(
    "retry_after",
    ["\u00b2", "Thu, 27 Nov 2026 12:00:00 -0000", "99999999999999999999x"],
)
async def test_odd_retry_after_on_503_never_aborts_disconnect(retry_after: str) -> None:
    script = [
        response(503, url=REVOKE, retry_after=retry_after),
        response(200, url=REVOKE),  # the retry, if the value allowed one
        response(200, url=REVOKE),
    ]
    connections, stores, server = await setup(script)
    outcomes = await connections.disconnect(server, "shared", actor="admin")
    assert outcomes[-1] == "access_token revoked"
    conn = await stores.connections.get("s1", "shared")
    assert conn is not None
    assert conn.access_token is None
    assert conn.refresh_token is None


async def test_invalid_grant_at_http_200_still_needs_reauth() -> None:
    body = token_body(error="invalid_grant", access_token="at-2")
    connections, _, server = await setup([response(200, body)])
    with pytest.raises(AuthorizationRequired):
        await connections.refresh(server, "shared", force=True)

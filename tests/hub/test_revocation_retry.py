"""Disconnect when the revocation endpoint misbehaves (REV-4, REV-5).

A real authorization server does not answer 503 on demand, so the fetcher is replaced
by a scripted one (error injection); everything else is the real hub and store.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from hub.fakes import FakeFetcher, Sent, hub_context, seed_grant
from tether.errors import NetworkError
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
REVOKE = f"{ISSUER}/revoke"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class Clock:
    def now(self) -> datetime:
        return NOW


class ScriptedFetcher(FakeFetcher):
    """Answers each request with the next scripted response (or raises it)."""

    def __init__(self, script: list[HttpResponse | Exception]) -> None:
        super().__init__()
        self.script = script

    @property
    def sent(self) -> list[Mapping[str, str]]:
        return [r.form for r in self.requests]

    def answer(self, sent: Sent) -> HttpResponse:
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def response(status: int, body: bytes = b"", **headers: str) -> HttpResponse:
    values = {k.replace("_", "-"): [v] for k, v in headers.items()}
    values.setdefault("content-type", ["application/json"])
    return HttpResponse(status, values, body, REVOKE)


async def connected(stores: Stores) -> ServerRecord:
    return await seed_grant(
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
            issuer=ISSUER,
            client_id="c1",
        ),
        endpoints={"token_endpoint": f"{ISSUER}/t", "revocation_endpoint": REVOKE},
        fetched_at=NOW,
    )


async def disconnect(
    script: list[HttpResponse | Exception],
) -> tuple[list[str], Connection | None, ScriptedFetcher]:
    stores, _ = open_memory_stores(KeyRing.generate(), now=Clock().now)
    server = await connected(stores)
    fetcher = ScriptedFetcher(script)
    ctx = hub_context(stores, fetcher, Clock())
    outcomes = await Connections(ctx).disconnect(server, "shared", actor="admin")
    return outcomes, await stores.connections.get("s1", "shared"), fetcher


async def test_503_with_retry_after_is_retried_once() -> None:
    outcomes, conn, fetcher = await disconnect(
        [
            response(503, retry_after="0"),
            response(200),  # refresh token
            response(200),  # access token
        ]
    )
    assert outcomes == ["refresh_token revoked", "access_token revoked"]
    assert [f["token_type_hint"] for f in fetcher.sent] == [
        "refresh_token",
        "refresh_token",
        "access_token",
    ]
    assert conn is not None
    assert conn.access_token is None
    assert conn.refresh_token is None


@pytest.mark.parametrize(
    ("script", "why"),
    [
        (
            [response(503, retry_after="0"), response(503, retry_after="0")],
            "temporarily unavailable",
        ),
        ([response(503)], "temporarily unavailable"),  # no Retry-After: no retry
        (
            [response(400, b'{"error":"unsupported_token_type"}')],
            "unsupported_token_type",
        ),
        ([NetworkError("connection refused")], "connection refused"),
    ],
)
async def test_failed_revocation_still_clears_local_tokens(
    script: list[HttpResponse | Exception], why: str
) -> None:
    outcomes, conn, _ = await disconnect([*script, response(200)])
    assert outcomes[0].startswith("refresh_token not revoked")
    assert why in outcomes[0]
    assert outcomes[1] == "access_token revoked"
    assert conn is not None
    assert conn.status == "disconnected"
    assert conn.access_token is None
    assert conn.refresh_token is None
